//go:build !linux

package daemon_test

import "testing"

// edgeReusePortRefused is Linux-specific; elsewhere the plain second bind
// in TestSecondListenerOnSamePortFails is the check.
func edgeReusePortRefused(t *testing.T, addr string) {}
