package mux

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/sni"
)

// readCounter counts the reads that reach the socket.
type readCounter struct {
	net.Conn
	reads atomic.Int64
}

func (r *readCounter) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return r.Conn.Read(p)
}

// readRouting reads the routing phase the way Server.decide does.
func readRouting(t *testing.T, rr *routingReader) *sni.ClientHello {
	t.Helper()
	var first [1]byte
	if _, err := io.ReadFull(rr, first[:]); err != nil {
		t.Fatal(err)
	}
	rr.rewind()
	hello, err := sni.ReadClientHello(rr)
	if err != nil {
		t.Fatal(err)
	}
	return hello
}

// A client's first flight costs one read, and bytes sent behind the hello
// are kept, in order, for whoever reads the connection next.
func TestRoutingReaderOneReadForAHello(t *testing.T) {
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "team-a.nexmux.test"})
	extra := []byte("sent right behind the hello")
	c, s := testnet.Pair(t)
	if _, err := c.Write(append(append([]byte{}, hello...), extra...)); err != nil {
		t.Fatal(err)
	}
	rc := &readCounter{Conn: s}
	rr := newRoutingReader(rc)
	h := readRouting(t, rr)
	if h.ServerName != "team-a.nexmux.test" || !bytes.Equal(h.Raw, hello) {
		t.Fatalf("hello %q, %d raw bytes (sent %d)", h.ServerName, len(h.Raw), len(hello))
	}
	if n := rc.reads.Load(); n != 1 {
		t.Errorf("%d reads for a %d-byte hello, want 1", n, len(hello))
	}
	if want := append(append([]byte{}, hello...), extra...); !bytes.Equal(rr.buf, want) {
		t.Errorf("kept %d bytes, want the %d sent (hello and what followed)", len(rr.buf), len(want))
	}
}

// A hello larger than the first read, arriving in pieces, is assembled
// whole; nothing past it is invented.
func TestRoutingReaderLargeFragmentedHello(t *testing.T) {
	var protos []string
	for i := range 150 {
		protos = append(protos, fmt.Sprintf("protocol-name-%03d-padding-padding", i))
	}
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "team-b.nexmux.test", NextProtos: protos})
	if len(hello) <= 2*routingReadSize {
		t.Fatalf("hello is %d bytes: too small to need the buffer to grow twice", len(hello))
	}
	c, s := testnet.Pair(t)
	go func() {
		for i := 0; i < len(hello); i += 700 {
			_, _ = c.Write(hello[i:min(i+700, len(hello))])
			time.Sleep(2 * time.Millisecond)
		}
	}()
	rr := newRoutingReader(s)
	h := readRouting(t, rr)
	if h.ServerName != "team-b.nexmux.test" || !bytes.Equal(h.Raw, hello) {
		t.Fatalf("hello %q, %d raw bytes (sent %d)", h.ServerName, len(h.Raw), len(hello))
	}
	if !bytes.Equal(rr.buf, hello) {
		t.Fatalf("kept %d bytes, the client sent %d", len(rr.buf), len(hello))
	}
}

// Bytes and an error from the same read: the bytes first, then the error.
func TestRoutingReaderDataThenError(t *testing.T) {
	c, s := testnet.Pair(t)
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\n"))
	c.Close()
	rr := newRoutingReader(s)
	b, err := io.ReadAll(rr)
	if err != nil || string(b) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	if !bytes.Equal(rr.buf, b) {
		t.Fatal("buf is not every byte read")
	}
}

// While an upload reads ahead, crypto/tls's ~32 KiB reads are served from
// few large socket reads; every byte arrives once, in order, across
// Begin/End toggles; after End no pooled buffer is held, and bytes read
// ahead past the body stay readable.
func TestReadAhead(t *testing.T) {
	const size = 2 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	c, s := testnet.Pair(t)
	_ = s.(*net.TCPConn).SetReadBuffer(4 << 20)
	rc := &readCounter{Conn: s}
	conn := &routedConn{Conn: rc}
	go func() {
		_, _ = c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	time.Sleep(50 * time.Millisecond) // let the socket fill: reads then find much queued

	var got []byte
	p := make([]byte, 32<<10) // what crypto/tls asks for
	read := func(limit int) {
		for len(got) < limit {
			n, err := conn.Read(p[:min(len(p), limit-len(got))])
			got = append(got, p[:n]...)
			if err != nil {
				t.Fatalf("read at %d: %v", len(got), err)
			}
		}
	}
	const body = size/2 + 12345 // not a multiple of any read size
	conn.BeginReadAhead()
	read(body)
	ahead := rc.reads.Load()
	conn.EndReadAhead()
	conn.rmu.Lock()
	held, left := conn.pooled != nil, conn.rw-conn.rr
	conn.rmu.Unlock()
	if held {
		t.Fatal("a pooled buffer is held after EndReadAhead")
	}
	if unbuffered := int64(body / len(p)); ahead > unbuffered*3/4 {
		t.Errorf("%d socket reads for %d KiB read ahead, unbuffered would take %d", ahead, body>>10, unbuffered)
	}
	if left == 0 {
		t.Error("nothing read ahead past the body: the kept-bytes path went untested")
	}
	t.Logf("%d socket reads for the first %d KiB; %d bytes read ahead past it", ahead, body>>10, left)
	read(size * 3 / 4) // the bytes read ahead past the "body" come first
	conn.BeginReadAhead()
	read(size)
	conn.EndReadAhead()
	if n, err := conn.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("after the data: %d, %v; want EOF", n, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes lost or reordered")
	}
}

// Bytes and EOF from one read ahead: the bytes are handed out first, the
// EOF after them.
func TestReadAheadDataThenEOF(t *testing.T) {
	c, s := testnet.Pair(t)
	_, _ = c.Write([]byte("last bytes of an upload"))
	c.Close()
	time.Sleep(20 * time.Millisecond)
	conn := &routedConn{Conn: s}
	conn.BeginReadAhead()
	defer conn.EndReadAhead()
	var got []byte
	p := make([]byte, 5)
	for {
		n, err := conn.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "last bytes of an upload" {
		t.Fatalf("got %q", got)
	}
}

// eofWithData returns its data and io.EOF from the same Read, as an
// io.Reader may (TCP never does); the rest of net.Conn is a real socket.
type eofWithData struct {
	net.Conn
	data []byte
}

func (e *eofWithData) Read(p []byte) (int, error) {
	n := copy(p, e.data)
	e.data = e.data[n:]
	if len(e.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// Bytes that came with an error are handed out before it, by the routing
// reader and by the read-ahead alike.
func TestDataBeforeTheErrorThatCameWithIt(t *testing.T) {
	_, s := testnet.Pair(t)
	const msg = "GET /v2/ HTTP/1.1\r\nHost: a\r\n\r\n"
	small := make([]byte, 7)
	readAll := func(r io.Reader) (string, error) {
		var got []byte
		for {
			n, err := r.Read(small)
			got = append(got, small[:n]...)
			if err != nil {
				return string(got), err
			}
		}
	}
	rr := newRoutingReader(&eofWithData{Conn: s, data: []byte(msg)})
	if got, err := readAll(rr); got != msg || err != io.EOF {
		t.Errorf("routing reader: %q, %v", got, err)
	}
	conn := &routedConn{Conn: &eofWithData{Conn: s, data: []byte(msg)}}
	conn.BeginReadAhead()
	if got, err := readAll(conn); got != msg || err != io.EOF {
		t.Errorf("read-ahead: %q, %v", got, err)
	}
	conn.EndReadAhead()
}

// EndReadAhead from another goroutine while a read-ahead read is blocked
// does not pull the buffer from under it: the read completes intact and
// the buffer is given back after it. A deadline still interrupts a
// read-ahead read, and gives the buffer back too.
func TestReadAheadEndDuringReadAndDeadline(t *testing.T) {
	c, s := testnet.Pair(t)
	conn := &routedConn{Conn: s}
	conn.BeginReadAhead()
	type res struct {
		b   []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		p := make([]byte, 64<<10)
		n, err := conn.Read(p)
		done <- res{p[:n], err}
	}()
	time.Sleep(20 * time.Millisecond) // the read is blocked on an empty socket
	conn.EndReadAhead()
	conn.rmu.Lock()
	held := conn.pooled != nil
	conn.rmu.Unlock()
	if !held {
		t.Fatal("the buffer a blocked read fills was given back")
	}
	_, _ = c.Write([]byte("late bytes"))
	if r := <-done; r.err != nil || string(r.b) != "late bytes" {
		t.Fatalf("blocked read: %q, %v", r.b, r.err)
	}
	conn.rmu.Lock()
	held = conn.pooled != nil
	conn.rmu.Unlock()
	if held {
		t.Fatal("buffer still held after the read finished outside a read-ahead")
	}

	conn.BeginReadAhead()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1024)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	conn.EndReadAhead()
	conn.rmu.Lock()
	held = conn.pooled != nil
	conn.rmu.Unlock()
	if held {
		t.Fatal("buffer held after a read that timed out")
	}
}

// The bytes routing read come out first, never mixed with the socket's in
// one Read (so handing them out cannot block on the socket), and are let go
// once read.
func TestRoutedConnReplaysRoutingBytes(t *testing.T) {
	c, s := testnet.Pair(t)
	go func() {
		_, _ = c.Write([]byte("world"))
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	conn := &routedConn{Conn: s, rb: []byte("hello "), rw: 6}
	buf := make([]byte, 4)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "hell" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if n, err := conn.Read(make([]byte, 64)); err != nil || n != 2 {
		t.Fatalf("second Read = %d, %v; want the 2 routing bytes left", n, err)
	}
	if conn.rb != nil {
		t.Fatal("the routing bytes are still held after being read")
	}
	if rest, err := io.ReadAll(conn); err != nil || string(rest) != "world" {
		t.Fatalf("ReadAll = %q, %v", rest, err)
	}
}
