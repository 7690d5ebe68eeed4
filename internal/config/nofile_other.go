//go:build !unix

package config

// nofile: Windows has no per-process descriptor limit to read; the value
// taken when a unix limit is unknown keeps the derived defaults modest.
func nofile() uint64 { return 1024 }
