package daemon_test

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// Shell-script pushers written against Nexus, whose upload Locations carry
// no query, close an upload with PUT "$location?digest=...". nexmux's
// Location carries the affinity tag in its query, so that URL has a
// second '?': the digest must still reach Nexus (and the tag still lead
// to the upload's node), with one node as with several.
func TestUploadClosedByAppendingQuestionMarkDigest(t *testing.T) {
	for _, nodes := range []int{0, 3} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			st := stack.Start(t, stack.Options{Nodes: nodes, Config: haConfig()})
			tr := h1(st)
			base := "https://" + st.Host("team-a")
			resp, body := do(t, tr, http.MethodPost, base+"/v2/naive/app/blobs/uploads/", nil)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %s %s", resp.Status, body)
			}
			abs := func(l string) string {
				if strings.HasPrefix(l, "/") {
					return base + l
				}
				return l
			}
			blob := "a layer pushed by a shell script"
			resp, body = do(t, tr, http.MethodPatch, abs(resp.Header.Get("Location")), strings.NewReader(blob))
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("PATCH: %s %s", resp.Status, body)
			}
			dg := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(blob)))
			resp, body = do(t, tr, http.MethodPut, abs(resp.Header.Get("Location"))+"?digest="+dg, nil)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("PUT $location?digest=: %s %s", resp.Status, body)
			}
			if _, got := do(t, tr, http.MethodGet, base+"/v2/naive/app/blobs/"+dg, nil); got != blob {
				t.Fatalf("the blob reads back as %q", got)
			}
		})
	}
}
