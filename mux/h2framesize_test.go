package mux_test

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The HTTP/2 server's frame read buffer grows to the largest frame a
// client sends and stays for the connection's life: with net/http's
// default SETTINGS_MAX_FRAME_SIZE (1 MiB) one upload from a Go client
// (512 KiB DATA frames: containerd's push) left ~590 KiB on every idle
// connection. nexmux offers 64 KiB (~137 KiB idle after an upload): the
// protocol's 16 KiB (~98 KiB) cost a fifth more CPU per GiB pushed
// (docs/bench/h2-upload.md).
func TestHTTP2MaxReadFrameSizeIs64KiB(t *testing.T) {
	m := startMux(t, nil, "", 0)
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", m.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxFrameSize); !ok || v != 64<<10 {
		t.Errorf("SETTINGS_MAX_FRAME_SIZE %d (sent: %v), want 65536", v, ok)
	}
}
