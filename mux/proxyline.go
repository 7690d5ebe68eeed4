package mux

import "net"

// v1MaxLine is the longest PROXY v1 line, CRLF included (the spec's
// worst case, "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535").
const v1MaxLine = 107

// AwaitProxyLine waits, under raw's read deadline, until the socket below
// raw holds a whole PROXY v1 line, or bytes that can never become one (not
// "PROXY", a byte no line has, 107 bytes without LF), or the peer's FIN;
// it reads nothing. Call it before go-proxyproto reads a trusted peer's
// header: its v1 parser refuses a line that is not all in its first read
// (a slow-loris guard the handshake deadline makes needless here), though
// a line split over segments is valid and the spec recommends tolerating
// it. v2 needs no wait: its parser reads on until the declared length.
func AwaitProxyLine(raw net.Conn) { awaitProxyLine(raw) }

// v1Pending reports whether b, the start of a stream, is a PROXY v1 line
// that is not complete yet but could still become one.
func v1Pending(b []byte) bool {
	const sig = "PROXY"
	if len(b) < len(sig) {
		return sig[:len(b)] == string(b)
	}
	if string(b[:len(sig)]) != sig {
		return false
	}
	// The parser ignores whatever follows "PROXY UNKNOWN ", as the spec
	// has it: only the LF ends that line.
	unknown := len(b) >= 14 && string(b[:14]) == "PROXY UNKNOWN "
	for i, x := range b {
		switch {
		case x == '\n':
			return false // complete (or malformed): the parser decides
		case unknown:
		case x == '\r':
			if i+1 < len(b) {
				return false // a CR not followed by LF: never a line
			}
		case x < 0x20 || x > 0x7e:
			return false
		}
	}
	return len(b) < v1MaxLine
}
