//go:build !unix

package testnet

import "testing"

func claim(testing.TB, int) bool { return true }
