package l7

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nexmux/nexmux/internal/logtext"
)

// maxErrorPage bounds what is read of a Nexus error page to find its words;
// maxErrorWords bounds the words handed on.
const (
	maxErrorPage  = 64 << 10
	maxErrorWords = 200
)

// registryError turns Nexus's own text or HTML error page (an unknown or
// offline repository, a routing rule's block, a servlet error page), or an
// error with no body, into a Registry API error with the same
// status and Nexus's words: docker prints a body it cannot read as JSON
// raw, markup and all, and other clients show only the status.
func registryError(resp *http.Response) {
	if resp.StatusCode < 300 {
		return
	}
	h := resp.Header
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if resp.StatusCode < 400 {
		// A redirect's page (a servlet container's "moved here" link)
		// leads where its Location did before the rewrite.
		if mt == "text/html" || mt == "text/plain" || mt == "application/json" {
			hideNodeInBody(resp)
		}
		return
	}
	// An answer with no body (Jetty's, a front's), whatever its type, has
	// only its status to say, which docker reports as a JSON parse error.
	if mt != "text/plain" && mt != "text/html" && !emptyBody(resp) {
		if mt == "application/json" {
			hideNodeInBody(resp)
		}
		return
	}
	var words string
	if resp.Body != nil && resp.Body != http.NoBody {
		if enc := strings.TrimSpace(h.Get("Content-Encoding")); enc == "" || strings.EqualFold(enc, "identity") {
			raw, _ := readPage(resp.Body, maxErrorPage)
			if len(raw) <= maxErrorPage && isRegistryErrorJSON(raw) {
				// Already a Registry API error under another type: its
				// code (BLOB_UPLOAD_UNKNOWN, MANIFEST_UNKNOWN) is what
				// clients act on, and they read it whatever the type.
				resp.Body.Close()
				h.Set("Content-Type", "application/json")
				h.Set("Docker-Distribution-Api-Version", "registry/2.0")
				setBody(resp, raw)
				return
			}
			words = pageWords(string(raw[:min(len(raw), maxErrorPage)]), mt == "text/html")
		}
		resp.Body.Close()
	}
	if words == "" {
		words = http.StatusText(resp.StatusCode)
	} else if resp.Request != nil && resp.Request.URL != nil {
		words = hideNode(words, resp.Request.URL.Host, resp.Request.Host)
	}
	body := ErrorBody(pageErrorCode(resp.StatusCode), words)
	h.Set("Content-Type", "application/json")
	h.Set("Docker-Distribution-Api-Version", "registry/2.0") // as on nexmux's own errors
	h.Del("Content-Encoding")
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		// What a GET would get, without the body.
		resp.Body = http.NoBody
		h.Set("Content-Length", strconv.Itoa(len(body)))
		return
	}
	setBody(resp, body)
}

// emptyBody reports an answer with no body: a Content-Length of 0 (in any
// spelling net/http takes: "00" too), or a body
// of unknown length (chunked, or up to the close) that ends before its
// first byte. Only that byte is waited for: a body that has one streams on
// with it put back. Never a HEAD's answer, which has no body whatever it
// says.
func emptyBody(resp *http.Response) bool {
	if resp.Request == nil || resp.Request.Method == http.MethodHead {
		return false
	}
	if resp.ContentLength == 0 {
		return true
	}
	if resp.ContentLength >= 0 || resp.Body == nil || resp.Body == http.NoBody {
		return false
	}
	var first [1]byte
	n, err := io.ReadFull(resp.Body, first[:])
	if n == 0 && err == io.EOF {
		return true
	}
	resp.Body = &peekedBody{ReadCloser: resp.Body, first: first[:n], err: err}
	return false
}

// peekedBody is a body whose first byte (or the error reading it) was
// taken by emptyBody, handed out again before the rest.
type peekedBody struct {
	io.ReadCloser
	first []byte
	err   error
}

func (b *peekedBody) Read(p []byte) (int, error) {
	switch {
	case len(b.first) > 0 && len(p) > 0:
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	case b.err != nil:
		return 0, b.err
	}
	return b.ReadCloser.Read(p)
}

// hideNodeInBody names the node that answered "Nexus" in a body nexmux
// keeps (a JSON error's message, a redirect's page), as hideNode does in
// an error page's words; a body that names none, or is over maxErrorPage
// or compressed, goes as it came.
func hideNodeInBody(resp *http.Response) {
	req := resp.Request
	if req == nil || req.URL == nil || req.Method == http.MethodHead || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	if enc := strings.TrimSpace(resp.Header.Get("Content-Encoding")); enc != "" && !strings.EqualFold(enc, "identity") {
		return
	}
	raw, err := readPage(resp.Body, maxErrorPage)
	if err == errPageTooSlow {
		// The body is closed: what came of it cannot be completed.
		if resp.StatusCode < 400 {
			setBody(resp, nil)
			return
		}
		resp.Header.Set("Content-Type", "application/json")
		resp.Header.Set("Docker-Distribution-Api-Version", "registry/2.0")
		setBody(resp, ErrorBody(pageErrorCode(resp.StatusCode), http.StatusText(resp.StatusCode)))
		return
	}
	if err != nil || len(raw) > maxErrorPage {
		resp.Body = &peekedBody{ReadCloser: resp.Body, first: raw, err: err}
		return
	}
	resp.Body.Close()
	if hidden := hideNode(string(raw), req.URL.Host, req.Host); hidden != string(raw) {
		setBody(resp, []byte(hidden))
		return
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
}

// readPage reads up to limit+1 bytes of a page nexmux passes on only
// once read, within one read's timeout (upstreamReadStallTimeout) in
// all: a node that trickles it, a byte within each read's, would hold the
// client's answer back for as long as it liked. Past that, body is closed
// (its Nexus request ends) and what came is returned with errPageTooSlow.
func readPage(body io.ReadCloser, limit int64) ([]byte, error) {
	t := time.AfterFunc(time.Duration(upstreamReadStallTimeout.Load()), func() { body.Close() })
	raw, err := io.ReadAll(io.LimitReader(body, limit+1))
	if !t.Stop() {
		// Closed, or being closed: whatever the read returned.
		return raw, errPageTooSlow
	}
	return raw, err
}

// errPageTooSlow is readPage's cut: a timeout, as errReadStalled is.
var errPageTooSlow = fmt.Errorf("Nexus's answer did not come whole within the read timeout: %w", os.ErrDeadlineExceeded)

// isRegistryErrorJSON reports a Registry API error body:
// {"errors":[...]} with at least one error.
func isRegistryErrorJSON(b []byte) bool {
	var e struct {
		Errors []json.RawMessage `json:"errors"`
	}
	return json.Unmarshal(b, &e) == nil && len(e.Errors) > 0
}

// pageWords is the text of an error page on one line: an HTML page's title
// (else its text without tags), whitespace collapsed, at most maxErrorWords
// bytes of valid UTF-8.
func pageWords(page string, isHTML bool) string {
	if isHTML {
		lower := strings.ToLower(page)
		if i := strings.Index(lower, "<title>"); i >= 0 {
			if j := strings.Index(lower[i:], "</title>"); j >= 0 {
				page = page[i+len("<title>") : i+j]
			}
		}
		page = html.UnescapeString(stripTags(page))
	}
	page = strings.Join(strings.FieldsFunc(page, func(r rune) bool { return r <= ' ' || r == 0x7f }), " ")
	return strings.ToValidUTF8(logtext.Shorten(page, maxErrorWords), "?")
}

// stripTags drops everything between '<' and '>'.
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '<':
			in = true
			b.WriteByte(' ')
		case c == '>' && in:
			in = false
		case !in:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// pageErrorCode is the Registry API code of an error status without one.
// 5xx is UNAVAILABLE, which docker retries; 404 NAME_UNKNOWN (an unknown
// repository is what Nexus answers with a page), which it does not. Any
// other 4xx page (Jetty's 400, a 413, a 416) is UNSUPPORTED: the same
// request gets the same answer, and dockerd retries every code but
// UNAUTHORIZED, UNSUPPORTED, DENIED, TOOMANYREQUESTS and NAME_UNKNOWN.
func pageErrorCode(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case status == http.StatusForbidden:
		return "DENIED"
	case status == http.StatusNotFound:
		return "NAME_UNKNOWN"
	case status == http.StatusMethodNotAllowed:
		return "UNSUPPORTED"
	case status == http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case status >= 500:
		return "UNAVAILABLE"
	case status >= 400:
		return "UNSUPPORTED"
	}
	return "UNKNOWN"
}

// hideNode names the node that answered (host:port, then its host alone
// where that is an address or a dotted name, which a short name's letters
// inside other words are not) "Nexus" in an error page's words: as with
// Locations, an address that would lead past nexmux is for the log, not
// for clients. As in headers, only where it stands alone, and its host
// alone not where the public name (public, the request's Host) shares it:
// the words may hold the public name, which may hold the node's host.
func hideNode(words, node, public string) string {
	if node == "" {
		return words
	}
	byAddr, byHost := nodeNeedles(node, public)
	return byHost.replace(byAddr.replace(words, "Nexus"), "Nexus")
}

// hideNodeHeaders leaves out each header value that names the node that
// answered, as hideNode's words do: its "host:port", or its host alone
// where an address or dotted name (a front's Via, a node's own name for
// itself, a node's URL in a query nexmux keeps as Nexus wrote it). A
// blob redirect's Location may name the node's host (a blob store beside
// Nexus, on another port) and is held to its address with the port, as
// is every value where the node shares its host with the public name
// (public, the request's Host), which the rewritten URLs hold.
func hideNodeHeaders(h http.Header, node, public string, blobRedirect bool) {
	if node == "" {
		return
	}
	byAddr, byHost := nodeNeedles(node, public)
	for k, vs := range h {
		n := byHost
		if blobRedirect && k == "Location" {
			n = byAddr
		}
		i := 0
		for i < len(vs) && !n.in(vs[i]) {
			i++
		}
		if i == len(vs) {
			continue
		}
		kept := make([]string, 0, len(vs)-1)
		for _, v := range vs {
			if !n.in(v) {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(h, k)
		} else {
			h[k] = kept
		}
	}
}

// nodeNeedles are what names the node at address node: its address, and
// what counts alone, its host where that is an address or dotted name and
// not the public name's host (public, a Host; "" for none), else the
// address again. The host is part of the address: where it counts, it
// alone is looked for.
func nodeNeedles(node, public string) (byAddr, byHost nodeNeedle) {
	m := lastNodeMark.Load()
	if m == nil || m.node != node {
		var ok bool
		if m, ok = nodeMarks.Load(node); !ok {
			m = newNodeMark(node)
			if nodeMarksLen.Add(1) <= maxNodeMarks {
				nodeMarks.LoadOrStore(node, m)
			}
		}
		lastNodeMark.Store(m)
	}
	if m.host.s != "" && !m.sharesHost(public) {
		return m.addr, m.host
	}
	return m.addr, m.addr
}

// sharesHost reports whether the Host public names the node's host, in
// any spelling a client may send ("10.0.0.1.", "[::ffff:10.0.0.1]"): the
// URLs mapped onto public hold it, and only the node's address with its
// port may be hidden there. The spellings are only worked out where the
// node's host is in public at all.
func (m *nodeMark) sharesHost(public string) bool {
	return strings.EqualFold(m.host.s, hostPart(public)) || m.host.in(public) && hostOf(public) == m.hostKey
}

// nodeMark is what names a node, worked out once per node: every answer
// is searched for it (hideNodeHeaders).
type nodeMark struct {
	node string // as given
	addr nodeNeedle
	// host is the node's host, where that alone counts (an address or a
	// dotted name); its s is "" where it does not.
	host nodeNeedle
	// hostKey is the node's host as hostOf writes it.
	hostKey string
}

func newNodeMark(node string) *nodeMark {
	addr := strings.ToLower(node)
	m := &nodeMark{node: node, addr: newNodeNeedle(addr)}
	if hst, _, err := net.SplitHostPort(addr); err == nil && strings.ContainsAny(hst, ".:") {
		m.host = newNodeNeedle(hst)
		m.hostKey = hostOf(addr)
	}
	return m
}

// nodeMarks holds the nodes' marks, by address as the requests to them
// carry it, lastNodeMark the last one used (most front one node). The
// nodes are the configured ones, but reloads can name new ones without
// end: past maxNodeMarks a mark is worked out each time.
var (
	nodeMarks    syncMap[string, *nodeMark]
	nodeMarksLen atomic.Int64
	lastNodeMark atomic.Pointer[nodeMark]
)

const maxNodeMarks = 1024

// nodeNeedle is a node's address or host (lowercase), and whether it has
// letters, which a value must then be searched for in any case.
type nodeNeedle struct {
	s    string
	fold bool
	// at is where s holds its first byte that is no letter, digit or '-'
	// (a '.', a ':'), -1 if none: a value is searched for that byte, which
	// needs no folding and is rare in the values every answer carries
	// (digests, lengths, dates), then compared around it.
	at int
}

func newNodeNeedle(s string) nodeNeedle {
	at := -1
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			at = i
			break
		}
	}
	return nodeNeedle{s: s, fold: hasLetter(s), at: at}
}

// in reports whether v names the node: n.s standing on its own, not
// inside a longer name or address ("10.0.0.1" in "10.0.0.10",
// "registry.example.com" in "team-a.registry.example.com"), which a URL
// just mapped onto the public name may be.
func (n nodeNeedle) in(v string) bool { return n.index(v, 0) >= 0 }

// index is where n first stands alone in v at or after off, or -1.
func (n nodeNeedle) index(v string, off int) int {
	for off+len(n.s) <= len(v) {
		i := n.find(v[off:])
		if i < 0 {
			return -1
		}
		if i += off; standsAlone(v, i, i+len(n.s)) {
			return i
		}
		off = i + 1
	}
	return -1
}

// find is where n.s first is in v (in any case of its letters), or -1.
func (n nodeNeedle) find(v string) int {
	if n.at < 0 {
		if n.fold {
			return indexASCIIFold(v, n.s)
		}
		return strings.Index(v, n.s)
	}
	a := n.s[n.at]
	for p := n.at; p < len(v); p++ {
		j := strings.IndexByte(v[p:], a)
		if j < 0 {
			return -1
		}
		p += j
		start := p - n.at
		if start+len(n.s) > len(v) {
			return -1
		}
		if c := v[start] | ' '; c != n.s[0]|' ' {
			continue // the first byte, case aside: most places end here
		}
		if w := v[start : start+len(n.s)]; w == n.s || n.fold && equalASCIIFold(w, n.s) {
			return start
		}
	}
	return -1
}

// equalASCIIFold reports whether v equals the lowercase s but for the
// case of ASCII letters.
func equalASCIIFold(v, s string) bool {
	for i := 0; i < len(s); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// replace is v with each place n stands alone in it replaced by with.
func (n nodeNeedle) replace(v, with string) string {
	i := n.index(v, 0)
	if i < 0 {
		return v
	}
	var b strings.Builder
	last := 0
	for ; i >= 0; i = n.index(v, last) {
		b.WriteString(v[last:i])
		b.WriteString(with)
		last = i + len(n.s)
	}
	b.WriteString(v[last:])
	return b.String()
}

// standsAlone reports whether v[start:end] is no part of a longer name or
// address: no letter, digit, '-' or '.' before it (but a %XX escape's, a
// URL in a query), and none after it, a '.' only ending the value or a
// sentence.
func standsAlone(v string, start, end int) bool {
	if start > 0 {
		c := v[start-1]
		escaped := start >= 3 && v[start-3] == '%' && isHexDigit(v[start-2]) && isHexDigit(c)
		if (nameByte(c) || c == '.') && !escaped {
			return false
		}
	}
	if end < len(v) {
		c := v[end]
		if nameByte(c) || c == '.' && end+1 < len(v) && nameByte(v[end+1]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hasLetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return true
		}
	}
	return false
}

// hostPart is a Host header's host, without its port or brackets.
// (net.SplitHostPort allocates its error for a Host without a port.)
func hostPart(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.IndexByte(hostport, ']'); i > 0 {
			return hostport[1:i]
		}
	}
	if i := strings.IndexByte(hostport, ':'); i >= 0 && strings.Count(hostport, ":") == 1 {
		return hostport[:i]
	}
	return hostport
}
