package l7

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nexmux/nexmux/route"
)

// pushMark is appended to a token nexmux hands out for a scope with the
// push action. Clients send the token back on every request of that push
// session, so any replica can tell a push's existence checks (which must ask
// the hosted repository) from a pull's (which must ask the group) without
// shared state. The images the scope pushes to follow it (route.PushList):
// the same token may read other images, whose checks are a pull's. It is
// made of token68 characters, so clients carry it as is, and it is stripped
// before Nexus sees the token.
const pushMark = ".nexmux-push"

// maxTokenResponse bounds the token response nexmux rewrites; a larger one
// passes through unmarked.
const maxTokenResponse = 64 << 10

// takeSession reads the session a request's credentials reveal and strips
// nexmux's mark from its bearer token, so Nexus gets its own token back.
// pushed is the mark's list of image names (route.PushList).
func takeSession(h http.Header) (auth route.Auth, pushed string) {
	v := h.Get("Authorization")
	scheme, cred, _ := strings.Cut(v, " ")
	switch {
	case strings.EqualFold(scheme, "bearer"):
		cred = strings.TrimSpace(cred)
		if i := strings.LastIndex(cred, pushMark); i >= 0 && route.ValidPushList(cred[i+len(pushMark):]) {
			h.Set("Authorization", scheme+" "+cred[:i])
			return route.AuthBearerPush, cred[i+len(pushMark):]
		}
		return route.AuthBearer, ""
	case strings.EqualFold(scheme, "basic"):
		return route.AuthBasic, ""
	}
	return route.AuthNone, ""
}

// markToken appends mark (pushMark and the request's route.PushList) to
// the token (and access_token) of a 200 JSON token response. Anything it
// cannot read (not 200, not JSON, too large) passes through unchanged: the
// client then pushes with the Basic-auth rule.
func markToken(resp *http.Response, mark string) error {
	if resp.StatusCode != http.StatusOK || resp.Body == nil {
		return nil
	}
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if enc != "" && enc != "gzip" && enc != "identity" {
		return nil
	}
	// Read whole before anything is passed on: one read (readPage).
	raw, err := readPage(resp.Body, maxTokenResponse)
	if err != nil {
		return err
	}
	if len(raw) > maxTokenResponse {
		// Too large to be a token: send it on whole, as it came.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(raw), resp.Body), resp.Body}
		return nil
	}
	resp.Body.Close()
	body := raw
	if enc == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(zr, maxTokenResponse+1))
		}
		if err != nil {
			body = nil
		}
	}
	marked, ok := markTokenJSON(body, mark)
	if !ok {
		setBody(resp, raw)
		return nil
	}
	resp.Header.Del("Content-Encoding")
	setBody(resp, marked)
	return nil
}

// markTokenJSON returns the token response with mark appended to its
// token fields, keeping every other field as Nexus sent it.
func markTokenJSON(body []byte, mark string) ([]byte, bool) {
	if len(body) == 0 || len(body) > maxTokenResponse {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil, false
	}
	marked := false
	for _, k := range []string{"token", "access_token"} {
		var tok string
		if json.Unmarshal(m[k], &tok) != nil || tok == "" || strings.Contains(tok, pushMark) {
			continue
		}
		b, _ := json.Marshal(tok + mark)
		m[k] = b
		marked = true
	}
	if !marked {
		return nil, false
	}
	out, err := json.Marshal(m)
	return out, err == nil
}

func setBody(resp *http.Response, b []byte) {
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
}
