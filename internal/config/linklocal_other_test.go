//go:build !linux

package config

import "testing"

func inLinkLocalNetns(t *testing.T, _ func(ll string)) {
	t.Skip("no IPv6 link-local address on this host, and scratch network namespaces need Linux")
}
