package l7

import (
	"net/http"
	"os"
)

// The tests' upstream transport: NEXMUX_TEST_UPSTREAM_TRANSPORT=sync runs
// them over the synchronous one (the --upstream-transport experiment).
type testRT interface {
	http.RoundTripper
	CloseIdleConnections()
}

func testTransport(dial dialFunc) testRT {
	if dial == nil {
		dial = upstreamDialer()
	}
	if os.Getenv("NEXMUX_TEST_UPSTREAM_TRANSPORT") == "sync" {
		return newSyncTransport(dial)
	}
	return newTransport(dial)
}
