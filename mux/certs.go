package mux

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/smallfile"
	"github.com/nexmux/nexmux/route"
)

// Certs picks a certificate by server name among the certificates' SANs.
// Lookups are two map probes: routing 10,000 names must cost what one does.
type Certs struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // "*.example.com" keyed "example.com"
	def   *tls.Certificate            // the first pair: for clients with no or unknown SNI
	// allExact and allWild (keyed as wild) hold every pair naming a SAN,
	// and defAlts every other pair covering all the fallback names: those
	// a client that cannot use the choice (an RSA-only client beside an
	// ECDSA pair) may be served.
	allExact map[string][]*tls.Certificate
	allWild  map[string][]*tls.Certificate
	defAlts  []*tls.Certificate
	names    []string
	pairs    []*tls.Certificate
	ids      map[*tls.Certificate]certID // each pair's, for session tickets
	at       time.Time                   // when the choice above was made
}

// loadPair is tls.LoadX509KeyPair with both files read by smallfile: they
// are read again on every reload. Both are read whatever the first gives,
// so two wrong paths are named in one run, one error each.
func loadPair(certFile, keyFile string) (tls.Certificate, []error) {
	cert, cerr := smallfile.Read(certFile)
	key, kerr := smallfile.Read(keyFile)
	var errs []error
	for _, err := range []error{cerr, kerr} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return tls.Certificate{}, errs
	}
	c, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, []error{err}
	}
	return c, nil
}

// ErrUnpaired is LoadCerts' problem of as many certificates as keys not
// given: one of how two settings go together, which a config file that
// could not be read may have completed.
var ErrUnpaired = errors.New("they are paired by position")

// LoadCerts loads certificate/key pairs paired by position. Every problem is
// returned, one error each.
func LoadCerts(certFiles, keyFiles []string) (*Certs, error) {
	var errs []error
	if len(certFiles) != len(keyFiles) {
		errs = append(errs, fmt.Errorf("cert/key: %d --cert but %d --key; %w", len(certFiles), len(keyFiles), ErrUnpaired))
	}
	var pairs []tls.Certificate
	for i := 0; i < len(certFiles) && i < len(keyFiles); i++ {
		c, perrs := loadPair(certFiles[i], keyFiles[i])
		for _, err := range perrs {
			errs = append(errs, fmt.Errorf("cert %q / key %q: %v", certFiles[i], keyFiles[i], err))
		}
		if len(perrs) > 0 {
			continue
		}
		pairs = append(pairs, c)
	}
	// A file left without its partner is still read: a wrong path among
	// them is a problem of its own, not one to find after pairing them.
	for i := len(keyFiles); i < len(certFiles); i++ {
		if _, err := smallfile.Read(certFiles[i]); err != nil {
			errs = append(errs, fmt.Errorf("cert %q: %v", certFiles[i], err))
		}
	}
	for i := len(certFiles); i < len(keyFiles); i++ {
		if _, err := smallfile.Read(keyFiles[i]); err != nil {
			errs = append(errs, fmt.Errorf("key %q: %v", keyFiles[i], err))
		}
	}
	if len(errs) > 0 {
		return nil, errlist.Join(errs...)
	}
	return NewCerts(pairs)
}

// NewCerts indexes certificates by their DNS SANs. Where two pairs name
// the same host, one valid now wins over one expired or not yet valid, and
// of two valid ones the one that expires later (a renewed certificate
// given beside the old one is served at once); otherwise the first.
func NewCerts(pairs []tls.Certificate) (*Certs, error) {
	return newCertsAt(pairs, time.Now())
}

func newCertsAt(pairs []tls.Certificate, now time.Time) (*Certs, error) {
	prefer := func(m map[string]*tls.Certificate, k string, cert *tls.Certificate) {
		if old, dup := m[k]; !dup || better(cert.Leaf, old.Leaf, now) {
			m[k] = cert
		}
	}
	c := &Certs{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{},
		allExact: map[string][]*tls.Certificate{}, allWild: map[string][]*tls.Certificate{},
		ids: make(map[*tls.Certificate]certID, len(pairs)), at: now}
	seen := map[string]bool{} // c.names as a set: certificates may name thousands
	for i := range pairs {
		cert := &pairs[i]
		leaf := cert.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %d: %v", i+1, err)
			}
			cert.Leaf = leaf
		}
		if c.def == nil {
			c.def = cert
		}
		c.pairs = append(c.pairs, cert)
		c.ids[cert] = leafID(leaf)
		for _, n := range leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if !seen[n] {
				seen[n] = true
				c.names = append(c.names, n)
			}
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				prefer(c.wild, suffix, cert)
				addOnce(c.allWild, suffix, cert)
			} else {
				prefer(c.exact, n, cert)
				addOnce(c.allExact, n, cert)
			}
		}
	}
	// An exact pair not valid now yields to a valid wildcard covering its
	// name (a renewal as a wildcard): clients refuse the other.
	for n, cert := range c.exact {
		if i := strings.IndexByte(n, '.'); i > 0 {
			if w := c.wild[n[i+1:]]; w != nil && !validAt(cert.Leaf, now) && validAt(w.Leaf, now) {
				c.exact[n] = w
			}
		}
	}
	// The fallback (clients without SNI: IP literals verify IP SANs) is the
	// first pair, or a better one that names all it names (a renewed one
	// given beside it; for one without SANs, its renewal by common name).
	if first := c.def; first != nil {
		for _, cert := range c.pairs {
			if renews(cert.Leaf, first.Leaf) && better(cert.Leaf, c.def.Leaf, now) {
				c.def = cert
			}
		}
		// Nothing valid names it all exactly: as for a name, a valid
		// wildcard renewal covering it all beats a pair not valid now.
		if !validAt(c.def.Leaf, now) {
			for _, cert := range c.pairs {
				if coversAll(cert.Leaf, first.Leaf) && better(cert.Leaf, c.def.Leaf, now) {
					c.def = cert
				}
			}
		}
		for _, cert := range c.pairs {
			if cert != c.def && coversAll(cert.Leaf, c.def.Leaf) {
				c.defAlts = append(c.defAlts, cert)
			}
		}
	}
	return c, nil
}

// addOnce appends cert to m[k] unless it is there (a pair naming a host twice).
func addOnce(m map[string][]*tls.Certificate, k string, cert *tls.Certificate) {
	if !slices.Contains(m[k], cert) {
		m[k] = append(m[k], cert)
	}
}

// coversAll reports whether a serves every name b does to a client that
// checks it (crypto/x509's own matching: a wildcard covers one label),
// each IP SAN included. a's names are indexed once: VerifyHostname scans
// them all for each of b's, and pairs compared whole may name thousands.
func coversAll(a, b *x509.Certificate) bool {
	if len(b.DNSNames)+len(b.IPAddresses) == 0 {
		return renews(a, b)
	}
	x := newVerifyIndex(a)
	for _, n := range b.DNSNames {
		if !x.verifies(n) {
			return false
		}
	}
	for _, ip := range b.IPAddresses {
		if !x.verifies(ip.String()) {
			return false
		}
	}
	return true
}

// verifyIndex answers a certificate's VerifyHostname from its SANs indexed:
// names holds each DNS SAN lowercased (ASCII), with what it matches as
// crypto/x509 decides it, ips each IP SAN in its 16-byte form.
type verifyIndex struct {
	names map[string]sanUse
	ips   map[[16]byte]bool
}

// sanUse is how a DNS SAN matches in VerifyHostname: exactly (any SAN, for
// a name that is no valid host name), exactly for a valid name too (a SAN
// that is no valid pattern), as a valid pattern without a wildcard, or, keyed
// by what follows "*.", as a wildcard.
type sanUse uint8

const (
	sanExact sanUse = 1 << iota
	sanOddExact
	sanName
	sanWildcard
)

func newVerifyIndex(c *x509.Certificate) verifyIndex {
	x := verifyIndex{names: make(map[string]sanUse, len(c.DNSNames))}
	for _, m := range c.DNSNames {
		lm := lowerASCII(m)
		if m != "" && m != "." {
			x.names[lm] |= sanExact
		}
		switch {
		case !validHostname(m, true):
			if m != "" && m != "." {
				x.names[lm] |= sanOddExact
			}
		case strings.HasPrefix(lm, "*."):
			x.names[lm[2:]] |= sanWildcard
		default:
			x.names[lm] |= sanName
		}
	}
	if len(c.IPAddresses) > 0 {
		x.ips = make(map[[16]byte]bool, len(c.IPAddresses))
		for _, ip := range c.IPAddresses {
			// net.IP.Equal: a 4-byte address is its IPv4-mapped 16-byte
			// one; one of any other length equals nothing.
			if ip16 := ip.To16(); ip16 != nil {
				x.ips[[16]byte(ip16)] = true
			}
		}
	}
	return x
}

// verifies reports what the certificate's VerifyHostname(h) == nil does.
func (x verifyIndex) verifies(h string) bool {
	candidateIP := h
	if len(h) >= 3 && h[0] == '[' && h[len(h)-1] == ']' {
		candidateIP = h[1 : len(h)-1]
	}
	if ip := net.ParseIP(candidateIP); ip != nil {
		return x.ips[[16]byte(ip.To16())]
	}
	c := lowerASCII(h)
	if c == "" || c == "." {
		// Matches no SAN exactly, and is no valid host name.
		return false
	}
	if !validHostname(c, false) {
		return x.names[c]&sanExact != 0
	}
	if x.names[c]&sanOddExact != 0 {
		return true
	}
	t := strings.TrimSuffix(c, ".")
	if x.names[t]&sanName != 0 {
		return true
	}
	i := strings.IndexByte(t, '.')
	return i >= 0 && x.names[t[i+1:]]&sanWildcard != 0
}

// lowerASCII lowercases ASCII letters only, byte by byte, as crypto/x509
// does: strings.ToLower would turn bytes that are no UTF-8 into U+FFFD.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// validHostname is crypto/x509's rule (RFC 6125 2.2, leniently) for a name
// it matches by pattern (isPattern: a SAN, which may start with "*.") or
// for one it matches against (a trailing dot allowed); others it matches
// only exactly.
func validHostname(host string, isPattern bool) bool {
	if !isPattern {
		host = strings.TrimSuffix(host, ".")
	}
	if len(host) == 0 || host == "*" {
		return false
	}
	for i, part := range strings.Split(host, ".") {
		if part == "" {
			return false
		}
		if isPattern && i == 0 && part == "*" {
			continue
		}
		for j, c := range part {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', 'A' <= c && c <= 'Z', c == '_':
			case c == '-' && j != 0:
			default:
				return false
			}
		}
	}
	return true
}

// renews reports whether a can stand in for b: it names every DNS and IP
// SAN b does, or, b having none (a CN-only certificate), it has none
// either and b's common name.
func renews(a, b *x509.Certificate) bool {
	if len(b.DNSNames)+len(b.IPAddresses) == 0 {
		return len(a.DNSNames)+len(a.IPAddresses) == 0 && a.Subject.CommonName == b.Subject.CommonName
	}
	return namesAll(a, b)
}

// namesAll reports whether a names every DNS and IP SAN b does.
// A set of a's names keeps it linear: every pair is compared with the
// first, itself included. SANs are ASCII (IA5String): lowercasing folds.
func namesAll(a, b *x509.Certificate) bool {
	has := make(map[string]bool, len(a.DNSNames))
	for _, m := range a.DNSNames {
		has[strings.ToLower(m)] = true
	}
	for _, n := range b.DNSNames {
		if !has[strings.ToLower(n)] {
			return false
		}
	}
	if len(b.IPAddresses) == 0 {
		return true
	}
	ips := newVerifyIndex(&x509.Certificate{IPAddresses: a.IPAddresses}).ips
	for _, ip := range b.IPAddresses {
		if ip16 := ip.To16(); ip16 == nil || !ips[[16]byte(ip16)] {
			return false
		}
	}
	return true
}

// validAt reports whether a certificate is within its validity at t.
func validAt(leaf *x509.Certificate, t time.Time) bool {
	return !t.Before(leaf.NotBefore) && !t.After(leaf.NotAfter)
}

// better reports whether a should serve a name b serves too.
func better(a, b *x509.Certificate, now time.Time) bool {
	va, vb := validAt(a, now), validAt(b, now)
	if va != vb {
		return va
	}
	return va && a.NotAfter.After(b.NotAfter)
}

// Warnings names the pairs that are not valid now, or expire within
// expiresSoon: clients refuse an expired certificate, so an operator must
// hear of it at start and on each reload, not from the first failed pull.
func (c *Certs) Warnings(expiresSoon time.Duration) []string {
	return c.warningsAt(c.at, expiresSoon)
}

func (c *Certs) warningsAt(now time.Time, expiresSoon time.Duration) []string {
	if c == nil {
		return nil
	}
	var out []string
	seen := map[*tls.Certificate]bool{}
	for _, m := range []map[string]*tls.Certificate{c.exact, c.wild} {
		for _, cert := range m {
			seen[cert] = true
		}
	}
	// A pair of another key type than the one chosen for a name serves
	// the clients that cannot use the choice (For).
	otherKeyType := func(chosen map[string]*tls.Certificate, all map[string][]*tls.Certificate) {
		for n, list := range all {
			for _, cert := range list {
				if cert.Leaf.PublicKeyAlgorithm != chosen[n].Leaf.PublicKeyAlgorithm {
					seen[cert] = true
				}
			}
		}
	}
	otherKeyType(c.exact, c.allExact)
	otherKeyType(c.wild, c.allWild)
	otherKeyType(map[string]*tls.Certificate{"": c.def}, map[string][]*tls.Certificate{"": c.defAlts})
	for _, cert := range c.pairs {
		leaf := cert.Leaf
		names := strings.Join(leaf.DNSNames, ",")
		if names == "" {
			names = "CN=" + leaf.Subject.CommonName
		}
		if !seen[cert] && cert != c.def {
			continue // every name it has is served by a better one
		}
		switch {
		case now.After(leaf.NotAfter):
			out = append(out, fmt.Sprintf("certificate for %s expired on %s", names, leaf.NotAfter.UTC().Format(time.RFC3339)))
		case now.Before(leaf.NotBefore):
			out = append(out, fmt.Sprintf("certificate for %s is not valid before %s", names, leaf.NotBefore.UTC().Format(time.RFC3339)))
		case leaf.NotAfter.Sub(now) < expiresSoon:
			out = append(out, fmt.Sprintf("certificate for %s expires on %s", names, leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// certRewarn is how often a served certificate that draws a warning is
// warned about again in a process that is not reloaded.
const certRewarn = 24 * time.Hour

// NextCheck is when the choice or the warnings made at c's building may
// next change: a pair becomes valid, expires, or comes within expiresSoon
// of its expiry; a day after a warning, to repeat it. Zero: never. A
// long-running process must not keep serving an expired certificate
// beside a valid one, nor go quiet about one about to expire.
func (c *Certs) NextCheck(expiresSoon time.Duration) time.Time {
	if c == nil {
		return time.Time{}
	}
	var next time.Time
	consider := func(t time.Time) {
		if t.After(c.at) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, cert := range c.pairs {
		consider(cert.Leaf.NotBefore)
		consider(cert.Leaf.NotAfter)
		consider(cert.Leaf.NotAfter.Add(-expiresSoon))
	}
	if len(c.Warnings(expiresSoon)) > 0 {
		consider(c.at.Add(certRewarn))
	}
	return next
}

// ChosenAt returns the same pairs chosen again as of now.
func (c *Certs) ChosenAt(now time.Time) *Certs {
	pairs := make([]tls.Certificate, len(c.pairs))
	for i, p := range c.pairs {
		pairs[i] = *p
	}
	n, err := newCertsAt(pairs, now)
	if err != nil {
		return c // cannot happen: every leaf was parsed already
	}
	return n
}

// Pairs is the number of certificate pairs, whatever they name: one that
// names only IP addresses still serves clients without SNI.
func (c *Certs) Pairs() int {
	if c == nil {
		return 0
	}
	return len(c.pairs)
}

// Len is the number of names the certificate pairs cover.
func (c *Certs) Len() int {
	if c == nil {
		return 0
	}
	return len(c.names)
}

// Names lists every DNS SAN indexed, each once, in order.
func (c *Certs) Names() []string {
	if c == nil {
		return nil
	}
	return append([]string(nil), c.names...)
}

// IPs lists every IP address SAN of the pairs, each once, in order: what a
// client connecting by address (no SNI) can verify.
func (c *Certs) IPs() []string {
	if c == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{} // out as a set: pairs may name thousands
	for _, p := range c.pairs {
		for _, ip := range p.Leaf.IPAddresses {
			if s := ip.String(); !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// Covers reports whether a certificate names host (not the fallback).
func (c *Certs) Covers(host string) bool {
	if c == nil {
		return false
	}
	_, ok := c.lookup(host)
	return ok
}

func (c *Certs) lookup(name string) (*tls.Certificate, bool) {
	// A name that is no host name gets the fallback, as an unknown one:
	// no wildcard pair takes it (the route table's rule).
	if !route.IsHostName(name) {
		return nil, false
	}
	if cert := c.exact[name]; cert != nil {
		return cert, true
	}
	// A wildcard covers exactly one label (RFC 6125 6.4.3).
	if i := strings.IndexByte(name, '.'); i > 0 {
		if cert := c.wild[name[i+1:]]; cert != nil {
			return cert, true
		}
	}
	return nil, false
}

// For returns the certificate for a (canonical) server name as Get does,
// unless the client cannot use it (its signature algorithms, or its TLS 1.2
// suites, leave out the key's type): then the best other pair naming the
// host (exactly or by wildcard), or for the fallback covering all its
// names, that the client can use, as crypto/tls picks among
// Config.Certificates. With no such pair, Get's choice (the handshake then
// fails as it would have).
func (c *Certs) For(h *tls.ClientHelloInfo, name string) *tls.Certificate {
	cert, alts, wildAlts := c.choices(name)
	if cert == nil {
		return nil
	}
	// One pair for the name (the common case): nothing to choose among.
	if n := len(alts) + len(wildAlts); n == 0 || n == 1 && (slices.Contains(alts, cert) || slices.Contains(wildAlts, cert)) {
		return cert
	}
	if h.SupportsCertificate(cert) == nil {
		return cert
	}
	var best *tls.Certificate
	for _, list := range [][]*tls.Certificate{alts, wildAlts} {
		for _, alt := range list {
			if alt != cert && (best == nil || better(alt.Leaf, best.Leaf, c.at)) && h.SupportsCertificate(alt) == nil {
				best = alt
			}
		}
	}
	if best == nil {
		return cert
	}
	return best
}

// choices are Get's choice for a (canonical) server name and the other
// pairs For may serve a client that cannot use it: those naming the host
// exactly, or by wildcard, or for the fallback those covering all its
// names.
func (c *Certs) choices(name string) (cert *tls.Certificate, alts, wildAlts []*tls.Certificate) {
	if c == nil {
		return nil, nil, nil
	}
	cert, named := c.lookup(name)
	if !named {
		return c.def, c.defAlts, nil
	}
	alts = c.allExact[name]
	if i := strings.IndexByte(name, '.'); i > 0 {
		wildAlts = c.allWild[name[i+1:]]
	}
	return cert, alts, wildAlts
}

// Get returns the certificate for a (canonical) server name, falling back to
// the first pair for clients without SNI and legacy-port clients that name
// Nexus's old host.
func (c *Certs) Get(name string) *tls.Certificate {
	if c == nil {
		return nil
	}
	if cert, ok := c.lookup(name); ok {
		return cert
	}
	return c.def
}
