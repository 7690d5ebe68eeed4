package config

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/nexmux/nexmux/upstream"
)

// HideCredentials is a configuration problem or warning as printed or
// logged: every value in it that looks like it carries userinfo (a URL
// given to the wrong setting) with that userinfo hidden by
// upstream.HideUserinfo. Problems quote values (%q) or a part of them, and
// the dialer's and the file system's errors echo them bare, so the text
// is read word by word, a quoted string being one word.
func HideCredentials(text string) string {
	if !strings.Contains(text, "@") {
		return text
	}
	text = hideSplitUserinfo(text, splitUserinfo(text))
	var b strings.Builder
	covered := 0 // text[:covered] was read by a quote that opened no quoted string
	for i := 0; i < len(text); {
		switch c := text[i]; {
		case c == '"':
			if i < covered {
				// Read over already, as an escaped quote (see splitUserinfo).
				b.WriteByte(c)
				i++
				continue
			}
			q, err := strconv.QuotedPrefix(text[i:])
			if err != nil {
				covered = i + quoteRead(text[i:])
				b.WriteByte(c)
				i++
				continue
			}
			i += len(q)
			if v, err := strconv.Unquote(q); err == nil && carriesUserinfo(v) {
				q = strconv.Quote(upstream.HideUserinfo(v))
			}
			b.WriteString(q)
		case c == ' ' || c == '\t' || c == '\n':
			b.WriteByte(c)
			i++
		default:
			j := i
			for j < len(text) && !strings.ContainsRune(wordEnds, rune(text[j])) {
				j++
			}
			w := text[i:j]
			if carriesUserinfo(w) {
				w = upstream.HideUserinfo(w)
			}
			b.WriteString(w)
			i = j
		}
	}
	return b.String()
}

// hideSplitUserinfo hides, before each '@' in text, the longest tail of
// any of split written there, when that tail is all of it or holds its
// ':': a value echoed bare (the dialer's errors) is cut in words where
// its userinfo holds a space or a quote, and a stray quote before a
// quoted value adds what came between to the userinfo read from it.
// Only a span ending at an '@' is hidden, so a short userinfo (": ") does
// not garble the rest of the problem.
func hideSplitUserinfo(text string, split []string) string {
	if len(split) == 0 {
		return text
	}
	// The userinfos' tails in a trie, read from their ends: one walk back
	// from each '@' finds the longest tail of any of them, so many quoted
	// values cost no more than their length.
	type edge struct {
		node int
		c    byte
	}
	next := map[edge]int{}
	hides := []bool{false} // per node: a whole userinfo, or a tail holding ':'
	for _, ui := range split {
		node, colon := 0, false
		for k := len(ui) - 1; k >= 0; k-- {
			colon = colon || ui[k] == ':'
			child, ok := next[edge{node, ui[k]}]
			if !ok {
				child = len(hides)
				next[edge{node, ui[k]}] = child
				hides = append(hides, false)
			}
			node = child
			hides[node] = hides[node] || colon || k == 0
		}
	}
	type span struct{ from, to int }
	var hide []span
	for at := strings.IndexByte(text, '@'); at >= 0; {
		n := 0
		for k, node := 0, 0; k < at; k++ {
			child, ok := next[edge{node, text[at-1-k]}]
			if !ok {
				break
			}
			if node = child; hides[node] {
				n = k + 1
			}
		}
		if n > 0 {
			// A span reaching back over those before ('@' in a
			// password) hides them with it.
			s := span{at - n, at}
			for len(hide) > 0 && hide[len(hide)-1].to >= s.from {
				s.from = min(s.from, hide[len(hide)-1].from)
				hide = hide[:len(hide)-1]
			}
			hide = append(hide, s)
		}
		more := strings.IndexByte(text[at+1:], '@')
		if more < 0 {
			break
		}
		at += 1 + more
	}
	var b strings.Builder
	done := 0
	for _, s := range hide {
		b.WriteString(text[done:s.from])
		b.WriteString("xxxxx")
		done = s.to
	}
	b.WriteString(text[done:])
	return b.String()
}

// splitUserinfo is the userinfo of every quoted value in text that
// carries one holding a character that ends a bare word, as written and
// as %q escapes it. The closing quote of each quoted string is tried as
// an opening one too: a stray quote before a value (a path echoed bare)
// takes the value's opening quote for its closing one. The quotes a
// failed read took for escaped ones (before the newline or bad escape
// that ended it) are not tried, here and in HideCredentials: reading on
// again from each of a run of them would take quadratic time.
func splitUserinfo(text string) []string {
	var split []string
	for i := strings.IndexByte(text, '"'); i >= 0 && i < len(text); {
		var next int
		q, err := strconv.QuotedPrefix(text[i:])
		if err != nil {
			next = i + max(1, quoteRead(text[i:]))
		} else {
			next = i + len(q) - 1 // the closing quote
			if v, err := strconv.Unquote(q); err == nil && carriesUserinfo(v) {
				if start, at := upstream.UserinfoSpan(v); strings.ContainsAny(v[start:at], wordEnds) {
					// Only the enclosing quotes go: a userinfo ending in '"'
					// ends in \" as %q writes it.
					ui, q := v[start:at], strconv.Quote(v[start:at])
					split = append(split, ui, q[1:len(q)-1])
				}
			}
		}
		j := strings.IndexByte(text[next:], '"')
		if j < 0 {
			break
		}
		i = next + j
	}
	return split
}

// quoteRead is how much of s, which starts with a quote opening no
// quoted string, strconv reads before it fails: up to the newline or the
// bad escape that ends it, or all of s.
func quoteRead(s string) int {
	for i := 1; i < len(s); {
		switch s[i] {
		case '"':
			return i // closed, yet invalid (its UTF-8): tried as an opening quote
		case '\n':
			return i
		case '\\':
			_, _, tail, err := strconv.UnquoteChar(s[i:], '"')
			if err != nil {
				return i
			}
			i = len(s) - len(tail)
		default:
			i++
		}
	}
	return len(s)
}

// wordEnds end a bare word in HideCredentials.
const wordEnds = " \t\n\""

// carriesUserinfo: an '@' after a ':' (user:password@, "scheme://" too) or
// after "//" (a URL's authority without its scheme). An address such as
// ops@corp or git@host:22 is left as written, and so is a HOST:PORT whose
// '@' is in its IPv6 literal's zone ("[fe80::1%eth0@x]:9090"): the colons
// before it are the address's, a password form would come before the '['.
func carriesUserinfo(v string) bool {
	at := strings.LastIndexByte(v, '@')
	if at < 0 {
		return false
	}
	before := v[:at]
	if strings.Contains(before, "//") {
		return true
	}
	if open := strings.LastIndexByte(before, '['); open >= 0 && inZone(before[open+1:]) && strings.Contains(v[at:], "]") {
		before = before[:open]
	}
	return strings.Contains(before, ":")
}

// inZone: s, what follows an IPv6 literal's '[', is an IPv6 address and
// the start of its zone ("fe80::1%eth0").
func inZone(s string) bool {
	addr, _, ok := strings.Cut(s, "%")
	a, err := netip.ParseAddr(addr)
	return ok && err == nil && a.Is6()
}
