// Package porthold keeps the port of a stopped TCP listener: bound but not
// listening, so that connecting is refused (RST), as when the server's
// process is gone, and no other socket (another test binary's listener)
// can take the port and answer in the server's place until it listens
// again.
package porthold

import (
	"errors"
	"net"
)

var errNotTCP = errors.New("porthold: not a TCP listener")

// Hold is a stopped listener's port. Listen serves it again; Close lets it
// go. A Hold is not safe for concurrent use.
type Hold struct {
	addr *net.TCPAddr
	fd   int // the bound socket; -1 once spent (Linux)
}

// Addr is the held address.
func (h *Hold) Addr() *net.TCPAddr { return h.addr }
