package upstream

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nexmux/nexmux/internal/smallfile"
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
	b, err := smallfile.Read(file)
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
		s.rekeyLocked(derivedKey(s.nodes))
		return
	}
	// A shared secret replaces every derived key: with it, tags are
	// checked against the secret alone.
	s.keyFile = true
	s.key, s.oldKeys = slices.Clone(secret), nil
}

// keyGrace is how long a derived key stays valid for checking tags after a
// reload changed the node list (and so the key): uploads opened before the
// reload keep their node instead of reading as tampered.
const keyGrace = time.Hour

// maxOldKeys bounds the derived keys kept (several reloads within keyGrace).
const maxOldKeys = 8

type oldKey struct {
	key   []byte
	until time.Time
}

// rekeyLocked signs with key from now on and keeps the previous key valid
// for checking for keyGrace; s.mu is held.
func (s *Set) rekeyLocked(key []byte) {
	if hmac.Equal(key, s.key) {
		return
	}
	t := s.now()
	var kept []oldKey // new array: Untag reads the old one unlocked
	for _, k := range s.oldKeys {
		if t.Before(k.until) && !hmac.Equal(k.key, key) {
			kept = append(kept, k)
		}
	}
	if s.key != nil {
		kept = append(kept, oldKey{key: s.key, until: t.Add(keyGrace)})
	}
	if len(kept) > maxOldKeys {
		kept = kept[len(kept)-maxOldKeys:]
	}
	s.oldKeys, s.key = kept, key
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

// Retag returns the tag for the Location of a follow-up on upload uuid
// served by n: prev, the tag the follow-up came with, while it still
// verifies and names n, else Tag. A replica whose node list changed first
// would otherwise hand back tags signed with its new key, which replicas
// not yet reloaded count as tampered at every follow-up, and ask the nodes.
func (s *Set) Retag(n *Node, uuid, prev string) string {
	if prev != "" {
		if m, err := s.Untag(prev, uuid); err == nil && m == n {
			return prev
		}
	}
	return s.Tag(n, uuid)
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
	old := s.oldKeys
	all := append(slices.Clone(s.nodes), s.removed...)
	s.mu.RUnlock()
	fp := raw[:fpLen]
	ok := hmac.Equal(raw[fpLen:], mac(key, uuid, fp))
	if !ok && len(old) > 0 {
		t := s.now()
		for _, k := range old {
			if t.Before(k.until) && hmac.Equal(raw[fpLen:], mac(k.key, uuid, fp)) {
				ok = true
				break
			}
		}
	}
	if !ok {
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
// rest byte for byte, with the (last) tag's value. A '?' in a tag's value
// ends it, and what follows stays in the query: a script written for
// Nexus's query-less Locations closes an upload with
// PUT "$location?digest=...", whose digest would otherwise go with the tag.
func SplitTag(rawQuery string) (rest, tag string) {
	if !strings.Contains(rawQuery, TagParam) {
		return rawQuery, ""
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		if k == TagParam {
			var more string
			tag, more, _ = strings.Cut(v, "?")
			if more != "" {
				kept = append(kept, more)
			}
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
