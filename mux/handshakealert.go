package mux

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// alertWatch follows the records a client sends during its TLS handshake
// to catch an unencrypted alert. A TLS 1.3 client that refuses the
// certificate before it has keys of its own (OpenSSL, so curl, Python,
// git) sends one, and crypto/tls, which expects only encrypted records by
// then, reports it as a bad record MAC: a corrupt network, in a log line.
// Only record headers and an alert's two bytes are kept.
type alertWatch struct {
	hdr   [recordHeaderLen]byte
	nh    int // header bytes held
	left  int // body bytes of the current record still to come
	alert [2]byte
	na    int  // alert bytes held
	found bool // alert holds a whole unencrypted alert
}

const (
	recordHeaderLen = 5
	recordTypeAlert = 21
)

// feed takes the next bytes the handshake read, in order.
func (w *alertWatch) feed(p []byte) {
	for len(p) > 0 && !w.found {
		if w.nh < recordHeaderLen {
			k := copy(w.hdr[w.nh:], p)
			w.nh, p = w.nh+k, p[k:]
			if w.nh == recordHeaderLen {
				w.left, w.na = int(w.hdr[3])<<8|int(w.hdr[4]), 0
			}
			continue
		}
		k := min(w.left, len(p))
		// An encrypted TLS 1.3 record is application_data on the wire:
		// one typed alert, of an alert's length, is in the clear.
		if w.hdr[0] == recordTypeAlert && w.left+w.na == len(w.alert) {
			w.na += copy(w.alert[w.na:], p[:k])
			w.found = w.na == len(w.alert)
		}
		w.left, p = w.left-k, p[k:]
		if w.left == 0 {
			w.nh = 0
		}
	}
}

// explain returns err, or, where crypto/tls failed to decrypt the
// unencrypted alert the client sent, the alert as crypto/tls names one it
// can read.
func (w *alertWatch) explain(err error) error {
	if !w.found || !sentAlert(err, alertBadRecordMAC) {
		return err
	}
	return fmt.Errorf("remote error: %w (an unencrypted alert)", tls.AlertError(w.alert[1]))
}

const (
	alertBadRecordMAC = 20
	alertDecodeError  = 50
)

// sentAlert reports whether err is crypto/tls's own alert a, sent to the
// client on a failure of its own ("local error").
func sentAlert(err error, a tls.AlertError) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "local error" && oe.Err != nil && oe.Err.Error() == a.Error()
}

// explainAbsolute adds why crypto/tls refused a hello whose server name
// ends in a dot: its "error decoding message" names no part of the hello,
// and the log line shows the name routing took, without the dot.
func explainAbsolute(err error, absolute bool) error {
	if !absolute || !sentAlert(err, alertDecodeError) {
		return err
	}
	return fmt.Errorf("%w (crypto/tls refuses a server name that ends in a dot)", err)
}
