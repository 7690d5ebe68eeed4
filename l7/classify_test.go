package l7

import (
	"net/http"
	"strings"
	"testing"
)

// classifyByScan is the classification written as the searches it stands
// for: the last "/blobs/uploads/" names an upload session when one segment
// follows it; a read of the segment after the last "/blobs/" or
// "/manifests/" is by digest when that segment holds a ":".
func classifyByScan(method, sub string) (class int, digest, uuid string) {
	if strings.HasSuffix(sub, "/v2/token") {
		return classRead, "", ""
	}
	if i := strings.LastIndex(sub, "/blobs/uploads/"); i >= 0 {
		uuid = sub[i+len("/blobs/uploads/"):]
		if uuid != "" && !strings.Contains(uuid, "/") {
			return classUpload, "", uuid
		}
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return classWrite, "", ""
	case http.MethodGet, http.MethodHead:
		for _, seg := range []string{"/blobs/", "/manifests/"} {
			if i := strings.LastIndex(sub, seg); i >= 0 {
				ref := sub[i+len(seg):]
				if strings.Contains(ref, ":") && !strings.Contains(ref, "/") {
					return classDigest, ref, ""
				}
			}
		}
	}
	return classRead, "", ""
}

// classify answers what the searches answer for every path built from up to
// four registry-like segments (the upload, blob and manifest words, digests,
// tags, empty segments) and every method.
func TestClassifyMatchesScan(t *testing.T) {
	segs := []string{"", "v2", "token", "app", "blobs", "uploads", "manifests", "tags", "list",
		"sha256:0b1c", "latest", "a:b", "blobsx", "xblobs", "6f1c-uuid"}
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions}
	var paths []string
	var build func(p string, n int)
	build = func(p string, n int) {
		paths = append(paths, p, p+"/")
		if n == 0 {
			return
		}
		for _, s := range segs {
			build(p+"/"+s, n-1)
		}
	}
	build("", 4)
	paths = append(paths, "", "sha256:x", "blobs/uploads/u", "/v2/a/blobs/uploads/u/x")
	checked := 0
	for _, p := range paths {
		for _, m := range methods {
			c, d, u := classify(m, p)
			wc, wd, wu := classifyByScan(m, p)
			if c != wc || d != wd || u != wu {
				t.Fatalf("classify(%s, %q) = %d %q %q, want %d %q %q", m, p, c, d, u, wc, wd, wu)
			}
			checked++
		}
	}
	// The corpus reaches every class.
	for _, want := range []struct {
		m, p  string
		class int
	}{
		{http.MethodPatch, "/v2/a/blobs/uploads/6f1c-uuid", classUpload},
		{http.MethodGet, "/v2/a/manifests/sha256:0b1c", classDigest},
		{http.MethodHead, "/v2/a/blobs/sha256:0b1c", classDigest},
		{http.MethodGet, "/v2/a/manifests/latest", classRead},
		{http.MethodPost, "/v2/a/blobs/uploads/", classWrite},
	} {
		if c, _, _ := classify(want.m, want.p); c != want.class {
			t.Errorf("classify(%s, %q) = %d, want %d", want.m, want.p, c, want.class)
		}
	}
	t.Logf("%d paths × methods agree", checked)
}
