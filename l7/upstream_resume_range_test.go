package l7

import "testing"

// Content-Range of blobs past 2 GiB and 4 GiB parses as 64-bit offsets;
// anything not one satisfied range is not resumable.
func TestContentRangeLargeOffsets(t *testing.T) {
	for _, c := range []struct {
		v       string
		s, e, t int64
		ok      bool
	}{
		{"bytes 0-2147483647/2147483648", 0, 1<<31 - 1, 1 << 31, true},
		{"bytes 2147483648-4294967295/4294967296", 1 << 31, 1<<32 - 1, 1 << 32, true},
		{"bytes 4294967296-6442450943/6442450944", 1 << 32, 6<<30 - 1, 6 << 30, true},
		{"bytes 5000000000-9223372036854775806/9223372036854775807", 5000000000, 1<<63 - 2, 1<<63 - 1, true},
		{"bytes 0-9223372036854775807/9223372036854775808", 0, 0, 0, false}, // total overflows int64
		{"bytes 0-4294967296/4294967296", 0, 0, 0, false},                   // end at the total
		{"bytes */4294967296", 0, 0, 0, false},                              // a 416's
		{"bytes 0-9/*", 0, 0, 0, false},                                     // total unknown
		{"bytes 9-0/10", 0, 0, 0, false},
		{"0-9/10", 0, 0, 0, false},
		{"", 0, 0, 0, false},
		// Only digits: strconv takes a sign, the header's grammar does not.
		{"bytes +0-9/10", 0, 0, 0, false},
		{"bytes 0-+9/10", 0, 0, 0, false},
		{"bytes 0-9/+10", 0, 0, 0, false},
		{"bytes 0--0/10", 0, 0, 0, false},
		{"bytes 0-9/10 ", 0, 0, 0, false},
	} {
		s, e, tot, ok := contentRange(c.v)
		if ok != c.ok || ok && (s != c.s || e != c.e || tot != c.t) {
			t.Errorf("contentRange(%q) = %d %d %d %v, want %d %d %d %v", c.v, s, e, tot, ok, c.s, c.e, c.t, c.ok)
		}
	}
}
