package l7

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/nexmux/nexmux/route"
)

// maxFormBody is Jetty's default form limit (ContextHandler's
// DEFAULT_MAX_FORM_CONTENT_SIZE), which Nexus keeps: a larger form gets
// Jetty's 400 and is never a registry request.
const maxFormBody = 200000

// formEncoded reports a request whose body Nexus's Jetty reads as request
// parameters (Request.extractContentParameters): a POST or PUT (its
// form-encoded methods) with Content-Type application/x-www-form-urlencoded,
// in any case and with any parameters. Its fields join the query's, so a
// describe field there gets Nexus's description of the request, headers
// included, as ?describe does.
func formEncoded(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPut || r.ContentLength == 0 {
		return false
	}
	for _, ct := range r.Header.Values("Content-Type") {
		base, _, _ := strings.Cut(ct, ";")
		if strings.EqualFold(strings.TrimSpace(base), "application/x-www-form-urlencoded") {
			return true
		}
	}
	return false
}

// formCharsetsOK reports whether every charset a Content-Type names is one
// in which "describe" is spelt in ASCII bytes, as describeParam reads them.
// Jetty decodes the form in the charset it finds (UTF-16, EBCDIC...); it
// is searched for anywhere, as Jetty's own lookup is lenient.
func formCharsetsOK(h http.Header) bool {
	for _, ct := range h.Values("Content-Type") {
		ct = strings.ToLower(ct)
		for {
			i := strings.Index(ct, "charset")
			if i < 0 {
				break
			}
			ct = strings.TrimLeft(ct[i+len("charset"):], " \t")
			v, ok := strings.CutPrefix(ct, "=")
			if !ok {
				continue
			}
			v = strings.TrimLeft(v, " \t\"'")
			if j := strings.IndexAny(v, " \t;,\"'"); j >= 0 {
				v = v[:j]
			}
			switch v {
			case "utf-8", "utf8", "us-ascii", "iso-8859-1":
			default:
				return false
			}
		}
	}
	return true
}

// checkForm answers (false) a form-encoded request Nexus would take
// parameters from: only the token endpoint gets one (containerd's OAuth2
// POST), read here whole, at most maxFormBody bytes, and refused if it
// names describe; blobs and manifests never come as forms (curl's -d
// default type), and Jetty would eat them as fields anyway.
func (p *Proxy) checkForm(w http.ResponseWriter, r *http.Request, st *reqState) bool {
	if !route.IsTokenPath(st.judged) {
		p.refuseLocal(w, st, http.StatusUnsupportedMediaType, "UNSUPPORTED", "nexmux: a form-encoded body (Content-Type application/x-www-form-urlencoded) is served on the token endpoint only; Nexus would read it as parameters, not as content")
		return false
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") || !formCharsetsOK(r.Header) {
		p.refuseLocal(w, st, http.StatusUnsupportedMediaType, "UNSUPPORTED", "nexmux: a token form must be plain UTF-8 or ASCII")
		return false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxFormBody+1))
	if err != nil {
		p.clientBodyFailed(w, r, st, err)
		return false
	}
	if len(b) > maxFormBody {
		p.refuseLocal(w, st, http.StatusRequestEntityTooLarge, "UNSUPPORTED", "nexmux: a token form is larger than Nexus takes")
		return false
	}
	if describeParam(string(b)) {
		p.refuseLocal(w, st, http.StatusBadRequest, "UNSUPPORTED", "nexmux: the form field describe is not served (Nexus would describe the request, headers included, instead of answering it)")
		return false
	}
	st.form = b
	r.ContentLength, r.TransferEncoding = int64(len(b)), nil
	r.Body = http.NoBody
	if len(b) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	return true
}
