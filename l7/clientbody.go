package l7

import "errors"

// ErrClientBody marks a failure reading the client's request body: the
// client's fault (aborted, malformed chunking, short body), never Nexus's.
var ErrClientBody = errors.New("client request body failed")
