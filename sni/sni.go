// Package sni reads a TLS ClientHello off a freshly accepted connection and
// keeps every byte it read, so the listener can route on the server name and
// then hand the untouched byte stream (Raw first) to crypto/tls or to a
// passthrough backend. It also owns the few TLS record-layer constants the
// listener needs, and the alert it sends when it refuses a hello.
//
// The parser is our own (cryptobyte) rather than crypto/tls's, because
// crypto/tls refuses hellos that real clients send and that we still need to
// route, such as an SNI with a trailing dot.
package sni

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

// MaxHelloBytes caps the bytes (record headers included) read while looking
// for the ClientHello. Every byte is buffered per connection before the peer
// has proven anything, so the cap bounds what an unauthenticated client can
// make us hold. One maximum-size TLS record (16 KiB and its header, which
// a hello may fill) is about ten times a
// real hello today (Go 1.26 with its X25519MLKEM768 key share ~1.5 KB, Chrome
// ~1.7 KB), which leaves room for larger post-quantum key shares; only
// pathological framing of a large hello (one byte per record is 6x) gets
// near it.
const MaxHelloBytes = 16<<10 + recordHeaderLen

const (
	handshakeHeaderLen   = 4
	handshakeTypeHello   = 1
	extensionServerName  = 0
	extensionALPN        = 16
	sniNameTypeHostName  = 0
	maxSessionIDLen      = 32
	initialRawBufferSize = 2 << 10
)

// ClientHello is what the listener needs to route a connection.
type ClientHello struct {
	// ServerName is lowercased, one trailing dot removed, "" when absent.
	// It is not checked to be a host name: routing
	// (route.Table.LookupServerName) takes one that is not as unknown.
	ServerName string
	// Absolute: the name was sent with that trailing dot, which crypto/tls
	// refuses (a terminating listener says so when it does).
	Absolute bool
	ALPN     []string // protocols offered, in order
	Raw      []byte   // every byte read from the connection (whole records), to be replayed
}

var (
	// ErrNotTLS means the peer is not speaking TLS at all (plain HTTP, SSH,
	// SSLv2, a port scanner): the first record is not a handshake record or
	// its version major byte is not 3.
	ErrNotTLS = errors.New("sni: not a TLS handshake")
	// ErrMalformed means the peer speaks TLS framing but did not send a
	// well-formed ClientHello.
	ErrMalformed = errors.New("sni: malformed ClientHello")
	// ErrTooLarge means assembling the ClientHello would need more than
	// MaxHelloBytes.
	ErrTooLarge = errors.New("sni: ClientHello exceeds MaxHelloBytes")
)

// ReadClientHello reads whole TLS records from r until one complete ClientHello
// handshake message is assembled. It never reads past the last record it needs
// (it reads the 5-byte record header, then exactly the announced length, with
// io.ReadFull), so every byte it consumed is in the returned ClientHello.Raw.
//
// On error, when at least one byte was read, the partial Raw is returned in a
// non-nil *ClientHello so the caller can log it or replay it elsewhere (e.g.
// answer plain HTTP with a redirect). Errors from r (including timeouts) are
// wrapped with %w. A connection closed before its first byte yields io.EOF;
// one closed mid-hello yields io.ErrUnexpectedEOF.
func ReadClientHello(r io.Reader) (*ClientHello, error) {
	var (
		raw = make([]byte, 0, initialRawBufferSize)
		// hs is the handshake stream reassembled from record payloads. While
		// the hello sits in a single record (the common case) it aliases raw;
		// it gets its own array as soon as a second record is needed.
		hs      []byte
		hsOwned bool
		// msgLen is the announced ClientHello body length, -1 until the
		// 4-byte handshake header has arrived (it may itself be fragmented).
		msgLen  = -1
		records int
	)
	fail := func(err error) (*ClientHello, error) {
		if len(raw) == 0 {
			return nil, err
		}
		return &ClientHello{Raw: raw}, err
	}
	// read appends exactly n bytes from r to raw, keeping whatever a short
	// read delivered so Raw stays a faithful log of what was consumed.
	read := func(n int) ([]byte, error) {
		start := len(raw)
		if cap(raw)-start < n {
			grown := make([]byte, start, 2*cap(raw)+n)
			copy(grown, raw)
			raw = grown
		}
		got, err := io.ReadFull(r, raw[start:start+n])
		raw = raw[:start+got]
		return raw[start:], err
	}

	for {
		if len(raw)+recordHeaderLen > MaxHelloBytes {
			return fail(ErrTooLarge)
		}
		hdr, err := read(recordHeaderLen)
		if err != nil {
			if err == io.EOF && len(raw) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return fail(fmt.Errorf("sni: reading record header: %w", err))
		}
		records++
		if hdr[0] != RecordTypeHandshake || hdr[1] != 3 {
			if records == 1 {
				return fail(ErrNotTLS)
			}
			return fail(fmt.Errorf("%w: record type %d version %#02x%02x before the ClientHello was complete",
				ErrMalformed, hdr[0], hdr[1], hdr[2]))
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 {
			// RFC 8446, Section 5.1 forbids empty handshake fragments;
			// accepting them would let a peer spin us on headers alone.
			return fail(fmt.Errorf("%w: empty handshake record", ErrMalformed))
		}
		if n > maxRecordPayload {
			return fail(fmt.Errorf("%w: record length %d exceeds %d", ErrMalformed, n, maxRecordPayload))
		}
		if len(raw)+n > MaxHelloBytes {
			return fail(ErrTooLarge)
		}
		frag, err := read(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fail(fmt.Errorf("sni: reading record body: %w", err))
		}

		switch {
		case hs == nil:
			hs = frag
		case !hsOwned:
			hs = append(append(make([]byte, 0, len(hs)+len(frag)+1024), hs...), frag...)
			hsOwned = true
		default:
			hs = append(hs, frag...)
		}

		if msgLen < 0 && len(hs) >= handshakeHeaderLen {
			if hs[0] != handshakeTypeHello {
				return fail(fmt.Errorf("%w: first handshake message has type %d, want client_hello", ErrMalformed, hs[0]))
			}
			msgLen = int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
			// Fail now, before reading anything more, if even the tightest
			// framing of the rest of the message would overrun the cap.
			missing := handshakeHeaderLen + msgLen - len(hs)
			if missing > 0 {
				headers := (missing + maxRecordPayload - 1) / maxRecordPayload * recordHeaderLen
				if len(raw)+headers+missing > MaxHelloBytes {
					return fail(ErrTooLarge)
				}
			}
		}
		if msgLen < 0 || len(hs) < handshakeHeaderLen+msgLen {
			continue
		}
		if len(hs) > handshakeHeaderLen+msgLen {
			// The ClientHello precedes a key change, so TLS 1.3 requires it
			// to end on a record boundary (RFC 8446, Section 5.1), and a TLS
			// 1.2 client has nothing else to send before the ServerHello.
			return fail(fmt.Errorf("%w: %d trailing bytes after ClientHello in its last record",
				ErrMalformed, len(hs)-handshakeHeaderLen-msgLen))
		}
		name, absolute, alpn, err := parseHello(hs[handshakeHeaderLen:])
		if err != nil {
			return fail(err)
		}
		return &ClientHello{ServerName: name, Absolute: absolute, ALPN: alpn, Raw: raw}, nil
	}
}

// parseClientHello parses one handshake message body of type client_hello
// (the bytes after the 4-byte handshake header).
//
// The server name is normalized for routing: ASCII letters are lowercased
// (RFC 6066 host names are ASCII; folding other bytes could make distinct
// invalid names collide) and one trailing dot is removed, because some
// clients send absolute names and they must route like relative ones.
func parseClientHello(body []byte) (serverName string, alpn []string, err error) {
	serverName, _, alpn, err = parseHello(body)
	return serverName, alpn, err
}

// parseHello is parseClientHello, and whether the server name was sent
// with its trailing dot.
func parseHello(body []byte) (serverName string, absolute bool, alpn []string, err error) {
	s := cryptobyte.String(body)
	var (
		sessionID, suites, compression, exts cryptobyte.String
	)
	if !s.Skip(2 + 32) { // legacy_version, random
		return "", false, nil, fmt.Errorf("%w: truncated before session_id", ErrMalformed)
	}
	if !s.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > maxSessionIDLen {
		return "", false, nil, fmt.Errorf("%w: bad legacy_session_id", ErrMalformed)
	}
	if !s.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 {
		return "", false, nil, fmt.Errorf("%w: bad cipher_suites", ErrMalformed)
	}
	if !s.ReadUint8LengthPrefixed(&compression) || len(compression) < 1 {
		return "", false, nil, fmt.Errorf("%w: bad legacy_compression_methods", ErrMalformed)
	}
	if s.Empty() {
		// Pre-extension (SSLv3-era) hellos stop here; they carry no SNI.
		return "", false, nil, nil
	}
	if !s.ReadUint16LengthPrefixed(&exts) {
		return "", false, nil, fmt.Errorf("%w: bad extensions length", ErrMalformed)
	}
	if !s.Empty() {
		return "", false, nil, fmt.Errorf("%w: %d trailing bytes after extensions", ErrMalformed, len(s))
	}

	var seen extSet
	for !exts.Empty() {
		var (
			typ  uint16
			data cryptobyte.String
		)
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return "", false, nil, fmt.Errorf("%w: truncated extension", ErrMalformed)
		}
		if !seen.add(typ) {
			// Duplicates are forbidden (RFC 8446, Section 4.2), and a proxy
			// that picks one copy while the backend picks another could be
			// steered past its routing decision.
			return "", false, nil, fmt.Errorf("%w: duplicate extension %d", ErrMalformed, typ)
		}
		switch typ {
		case extensionServerName:
			if serverName, absolute, err = parseServerName(data); err != nil {
				return "", false, nil, err
			}
		case extensionALPN:
			if alpn, err = parseALPN(data); err != nil {
				return "", false, nil, err
			}
		}
	}
	return serverName, absolute, alpn, nil
}

func parseServerName(data cryptobyte.String) (string, bool, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return "", false, fmt.Errorf("%w: bad server_name extension", ErrMalformed)
	}
	var name []byte
	for !list.Empty() {
		var (
			typ  uint8
			host cryptobyte.String
		)
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&host) {
			return "", false, fmt.Errorf("%w: truncated server_name entry", ErrMalformed)
		}
		if typ != sniNameTypeHostName {
			continue
		}
		if name != nil {
			// RFC 6066 allows one name per type, and crypto/tls refuses a
			// second: routing by one while a backend reads another would
			// let a client steer past the routing decision.
			return "", false, fmt.Errorf("%w: two server_name host_name entries", ErrMalformed)
		}
		if len(host) == 0 {
			return "", false, fmt.Errorf("%w: empty server_name host_name", ErrMalformed)
		}
		name = host
	}
	if name == nil {
		return "", false, nil
	}
	out := make([]byte, 0, len(name))
	for _, b := range name {
		switch {
		case b == 0:
			// A NUL would truncate the name in C-string consumers (logs,
			// backends) and make them see a different host than we routed.
			return "", false, fmt.Errorf("%w: NUL in server_name", ErrMalformed)
		case 'A' <= b && b <= 'Z':
			b += 'a' - 'A'
		}
		out = append(out, b)
	}
	absolute := out[len(out)-1] == '.'
	if absolute {
		out = out[:len(out)-1]
	}
	if len(out) == 0 || out[len(out)-1] == '.' {
		return "", false, fmt.Errorf("%w: server_name %q is not a host name", ErrMalformed, name)
	}
	return string(out), absolute, nil
}

func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return nil, fmt.Errorf("%w: bad ALPN extension", ErrMalformed)
	}
	var protos []string
	for !list.Empty() {
		var proto cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
			return nil, fmt.Errorf("%w: bad ALPN protocol name", ErrMalformed)
		}
		protos = append(protos, string(proto))
	}
	return protos, nil
}

// extSet detects duplicate extension types without allocating for real
// hellos (a couple dozen extensions), while a crafted hello with thousands of
// tiny extensions costs a map rather than quadratic scanning.
type extSet struct {
	small [32]uint16
	n     int
	big   map[uint16]struct{}
}

func (e *extSet) add(t uint16) bool {
	if e.big != nil {
		if _, dup := e.big[t]; dup {
			return false
		}
		e.big[t] = struct{}{}
		return true
	}
	for _, v := range e.small[:e.n] {
		if v == t {
			return false
		}
	}
	if e.n < len(e.small) {
		e.small[e.n] = t
		e.n++
		return true
	}
	e.big = make(map[uint16]struct{}, 2*len(e.small))
	for _, v := range e.small {
		e.big[v] = struct{}{}
	}
	e.big[t] = struct{}{}
	return true
}
