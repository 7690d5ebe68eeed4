package upstream

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// The upload affinity tag rides in the upload Location's query as
// _nexmux=<tag>: docker clients follow Locations with their query, and keep
// no cookies. tag = base64url(fingerprint(6) || HMAC-SHA256(key, uuid,
// fingerprint)[:12]). The fingerprint is a hash of the node id, so host
// names never appear; the MAC binds the tag to its upload, so a tag cannot
// be moved to another session or forged to pick a node.

// TagParam is the query parameter that carries the tag.
const TagParam = "_nexmux"

const (
	fpLen  = 6
	macLen = 12
)

func fingerprint(id string) []byte {
	h := sha256.Sum256([]byte("nexmux-node\x00" + id))
	return h[:fpLen]
}

// derivedKey is the key replicas agree on with no configuration: a hash of
// the sorted node ids. Anyone who knows the node URLs can compute it.
func derivedKey(nodes []*Node) []byte {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	slices.Sort(ids)
	h := sha256.Sum256([]byte("nexmux-affinity\x00" + strings.Join(ids, "\x00")))
	return h[:]
}

// LoadSecret reads --affinity-secret-file: at least 16 bytes, surrounding
// blanks ignored.
func LoadSecret(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("affinity-secret-file: %v", err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) < 16 {
		return nil, fmt.Errorf("affinity-secret-file %s: the secret must be at least 16 bytes", file)
	}
	return b, nil
}

// SetSecret makes the set sign tags with a shared secret (nil: the key
// derived from the node ids).
func (s *Set) SetSecret(secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if secret == nil {
		s.keyFile = false
		s.key = derivedKey(s.nodes)
		return
	}
	s.keyFile = true
	s.key = slices.Clone(secret)
}

func mac(key []byte, uuid string, fp []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(uuid))
	m.Write([]byte{0})
	m.Write(fp)
	return m.Sum(nil)[:macLen]
}

// Tag returns the tag that sends upload uuid's follow-ups to n.
func (s *Set) Tag(n *Node, uuid string) string {
	s.mu.RLock()
	key := s.key
	s.mu.RUnlock()
	fp := fingerprint(n.ID)
	return base64.RawURLEncoding.EncodeToString(append(fp, mac(key, uuid, fp)...))
}

// Tag check results (nexmux_upload_affinity_total's result label).
var (
	ErrTagAbsent   = errors.New("absent")
	ErrTagTampered = errors.New("tampered")
)

// Untag returns the node tag names for upload uuid. A tag that does not
// verify is ErrTagTampered; one naming no node (current or removed) counts
// as absent.
func (s *Set) Untag(tag, uuid string) (*Node, error) {
	if tag == "" {
		return nil, ErrTagAbsent
	}
	raw, err := base64.RawURLEncoding.DecodeString(tag)
	if err != nil || len(raw) != fpLen+macLen {
		return nil, ErrTagTampered
	}
	s.mu.RLock()
	key := s.key
	all := append(slices.Clone(s.nodes), s.removed...)
	s.mu.RUnlock()
	fp := raw[:fpLen]
	if !hmac.Equal(raw[fpLen:], mac(key, uuid, fp)) {
		return nil, ErrTagTampered
	}
	for _, n := range all {
		if string(fingerprint(n.ID)) == string(fp) {
			return n, nil
		}
	}
	return nil, ErrTagAbsent
}

// SplitTag removes every _nexmux parameter from a raw query and returns the
// rest byte for byte, with the (last) tag's value.
func SplitTag(rawQuery string) (rest, tag string) {
	if !strings.Contains(rawQuery, TagParam) {
		return rawQuery, ""
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		if k == TagParam {
			tag = v
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "&"), tag
}

// AddTag appends the tag to a URL (its query, before any fragment).
func AddTag(u, tag string) string {
	frag := ""
	if i := strings.IndexByte(u, '#'); i >= 0 {
		u, frag = u[:i], u[i:]
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	if strings.HasSuffix(u, "?") || strings.HasSuffix(u, "&") {
		sep = ""
	}
	return u + sep + TagParam + "=" + tag + frag
}
