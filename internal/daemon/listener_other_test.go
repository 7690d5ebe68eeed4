//go:build !linux

package daemon_test

import "testing"

// reusePortRefused is Linux-specific; elsewhere the plain second bind
// in TestSecondListenerOnSamePortFails is the check.
func reusePortRefused(t *testing.T, addr string) {}
