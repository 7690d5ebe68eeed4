package mux

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// countConn counts the writes that reach the socket.
type countConn struct {
	net.Conn
	buf    bytes.Buffer
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes++
	return c.buf.Write(p)
}

func TestWriteBatch(t *testing.T) {
	cc := &countConn{}
	rc := &routedConn{Conn: cc}
	record := bytes.Repeat([]byte{0x17}, 16<<10+22) // one full TLS 1.3 record
	var want bytes.Buffer

	// Outside a batch every write goes straight through.
	mustWrite(t, rc, []byte("hello"), &want)
	if cc.writes != 1 {
		t.Fatalf("%d socket writes outside a batch, want 1", cc.writes)
	}

	// 40 records in a batch: batchSize/len(record) fit in one batch.
	rc.BeginBatch()
	const records = 40
	for range records {
		mustWrite(t, rc, record, &want)
	}
	if err := rc.EndBatch(); err != nil {
		t.Fatal(err)
	}
	perBatch := batchSize / len(record)
	if perBatch < 16 {
		t.Fatalf("a batch holds %d full records, want at least 16", perBatch)
	}
	if w, wantW := cc.writes-1, (records+perBatch-1)/perBatch; w != wantW {
		t.Errorf("%d socket writes for %d records, want %d", w, records, wantW)
	}

	// A write larger than the batch passes through whole, in order.
	rc.BeginBatch()
	mustWrite(t, rc, []byte("x"), &want)
	mustWrite(t, rc, bytes.Repeat([]byte("y"), batchSize+1), &want)
	if err := rc.EndBatch(); err != nil {
		t.Fatal(err)
	}
	// EndBatch twice, and a batch with nothing in it, are harmless.
	if err := rc.EndBatch(); err != nil {
		t.Fatal(err)
	}
	rc.BeginBatch()
	if err := rc.EndBatch(); err != nil {
		t.Fatal(err)
	}
	if rc.batch != nil {
		t.Error("a finished batch still holds its buffer")
	}
	if !bytes.Equal(cc.buf.Bytes(), want.Bytes()) {
		t.Error("bytes reordered or lost")
	}
}

func mustWrite(t *testing.T, w io.Writer, p []byte, also *bytes.Buffer) {
	t.Helper()
	if n, err := w.Write(p); err != nil || n != len(p) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	also.Write(p)
}

// A failed flush is reported by the write that needed the room, or by
// EndBatch.
func TestWriteBatchError(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	rc := &routedConn{Conn: a}
	rc.BeginBatch()
	if _, err := rc.Write([]byte("held")); err != nil {
		t.Fatalf("buffered write failed early: %v", err)
	}
	if err := rc.EndBatch(); err == nil {
		t.Error("EndBatch on a closed peer: no error")
	}
	a.Close()
}
