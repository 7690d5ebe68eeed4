package l7

import (
	"errors"
	"io"
	"sync"
)

// errSuperseded ends the body reads of an attempt that was given up for
// another node: its transport writer stops at once, with no client byte.
var errSuperseded = errors.New("request body: attempt superseded by another node")

// sharedBody is the client's request body as the failover attempts see it.
// Each attempt reads through its own attemptBody. Only one read of the
// client runs at a time; when the attempt whose transport writer started it
// has been superseded meanwhile (its node answered 503 or was found down
// while the writer was still waiting for the client), the bytes it brings
// are kept for the current attempt instead of going to the abandoned
// connection. A request moves (next) only while no byte was handed to any
// attempt, checked under the same lock that hands bytes out.
type sharedBody struct {
	src io.Reader
	c   io.Closer // the client's body

	mu     sync.Mutex
	gen    int           // the current attempt
	taken  int64         // bytes handed to attempts
	failed bool          // reading the client failed
	busy   bool          // a read of src is in flight
	wake   chan struct{} // closed when busy ends or gen changes
	stash  []byte        // read for a superseded attempt, owed to the next
	serr   error         // the error that came with the stash
	final  bool          // no further attempt: Close reaches the client body
	shut   bool          // the current attempt's writer closed its body
	closed bool          // c.Close was called
}

func newSharedBody(src io.Reader, c io.Closer) *sharedBody {
	return &sharedBody{src: src, c: c}
}

// attempt returns the body for the next attempt; last says no attempt will
// follow it (its Close reaches the client's body).
func (s *sharedBody) attempt(last bool) *attemptBody {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shut = false
	if last {
		s.final = true
	}
	return &attemptBody{s: s, gen: s.gen}
}

// next supersedes the current attempt if no byte of the body was handed
// out and reading it has not failed; it reports whether the request may
// move to another node.
func (s *sharedBody) next() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken > 0 || s.failed {
		return false
	}
	s.gen++
	s.wakeLocked()
	return true
}

// clientFailed reports whether reading the client's body failed.
func (s *sharedBody) clientFailed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// finish makes the current attempt the last: its Close (already done or to
// come) reaches the client's body. A nil s (no body) has nothing to end.
func (s *sharedBody) finish() {
	if s == nil {
		return // a request without a body
	}
	s.mu.Lock()
	s.final = true
	shut := s.shut
	s.mu.Unlock()
	if shut {
		s.closeClient()
	}
}

func (s *sharedBody) wakeLocked() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

// closeClient closes the client's body once. A read of it may be in flight
// (an abandoned attempt's writer waiting for the client): net/http's body
// Close waits for that read, so it must not hold up the caller.
func (s *sharedBody) closeClient() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	busy := s.busy
	s.mu.Unlock()
	if busy {
		go s.c.Close()
		return
	}
	s.c.Close()
}

func (s *sharedBody) read(gen int, p []byte) (int, error) {
	s.mu.Lock()
	for {
		if gen != s.gen {
			s.mu.Unlock()
			return 0, errSuperseded
		}
		if len(s.stash) > 0 {
			n := copy(p, s.stash)
			s.stash = s.stash[n:]
			s.taken += int64(n)
			s.mu.Unlock()
			return n, nil
		}
		if s.serr != nil {
			err := s.serr
			s.mu.Unlock()
			return 0, s.clientErr(err)
		}
		if !s.busy {
			break
		}
		// An abandoned attempt's read of the client is still waiting:
		// its bytes come to this attempt through the stash.
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		w := s.wake
		s.mu.Unlock()
		<-w
		s.mu.Lock()
	}
	s.busy = true
	s.mu.Unlock()

	n, err := s.src.Read(p)

	s.mu.Lock()
	s.busy = false
	s.wakeLocked()
	if err != nil && err != io.EOF {
		s.failed = true
	}
	if gen != s.gen {
		s.stash = append(s.stash, p[:n]...)
		s.serr = err
		s.mu.Unlock()
		return 0, errSuperseded
	}
	s.taken += int64(n)
	s.mu.Unlock()
	return n, s.clientErr(err)
}

func (s *sharedBody) clientErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return errors.Join(ErrClientBody, err)
}

// attemptBody is one attempt's view of the client's body.
type attemptBody struct {
	s   *sharedBody
	gen int
}

func (a *attemptBody) Read(p []byte) (int, error) { return a.s.read(a.gen, p) }

// WriteTo batches the copy like the body it wraps (bodywrite.go), reading
// through the attempt so a superseded attempt stops.
func (a *attemptBody) WriteTo(w io.Writer) (int64, error) {
	return copyBatched(w, readOnly{a})
}

// Close is the transport letting go of the body: it reaches the client's
// body only for the last attempt, so an attempt given up leaves the body to
// the next node.
func (a *attemptBody) Close() error {
	s := a.s
	s.mu.Lock()
	if a.gen != s.gen {
		s.mu.Unlock()
		return nil
	}
	s.shut = true
	final := s.final
	s.mu.Unlock()
	if final {
		s.closeClient()
	}
	return nil
}
