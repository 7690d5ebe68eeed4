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
	// A value echoed bare (the dialer's errors) is cut in words where its
	// userinfo holds a space or a quote: hidden by its text first, as
	// found where a problem quotes the same value.
	for _, ui := range splitUserinfo(text) {
		text = strings.ReplaceAll(text, ui, "xxxxx")
	}
	var b strings.Builder
	failed := false // the last quote tried opened no quoted string
	for i := 0; i < len(text); {
		switch c := text[i]; {
		case c == '"':
			if failed && text[i-1] == '\\' {
				// Read over already, as an escaped quote (see splitUserinfo).
				b.WriteByte(c)
				i++
				continue
			}
			q, err := strconv.QuotedPrefix(text[i:])
			if failed = err != nil; failed {
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

// splitUserinfo is the userinfo of every quoted value in text that
// carries one holding a character that ends a bare word, as written and
// as %q escapes it. The closing quote of each quoted string is tried as
// an opening one too: a stray quote before a value (a path echoed bare)
// takes the value's opening quote for its closing one. After a quote that
// opened no quoted string (a newline or a bad escape came first), no
// quote behind a '\' is tried, here and in HideCredentials: the failed
// read took it for an escaped one, and reading on again from each of a
// run of them would take quadratic time.
func splitUserinfo(text string) []string {
	var split []string
	failed := false
	for i := strings.IndexByte(text, '"'); i >= 0 && i < len(text); {
		next := i + 1
		if !failed || text[i-1] != '\\' {
			q, err := strconv.QuotedPrefix(text[i:])
			if failed = err != nil; !failed {
				next = i + len(q) - 1 // the closing quote
				if v, err := strconv.Unquote(q); err == nil && carriesUserinfo(v) {
					if start, at := upstream.UserinfoSpan(v); strings.ContainsAny(v[start:at], wordEnds) {
						ui := v[start:at]
						split = append(split, ui, strings.Trim(strconv.Quote(ui), `"`))
					}
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
