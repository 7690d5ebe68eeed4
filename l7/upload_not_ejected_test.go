package l7

import (
	"io"
	"net/http"
	"path"
	"strings"
	"testing"
)

// An upload follow-up stays with its session's node: the ejected node a
// failed read moves on to (fc48436) holds no session of another node's.
// A bodiless follow-up (the upload's status, a closing PUT without a body)
// could otherwise move there on its node's 503 and come back "upload
// unknown", or skip asking the nodes for the session when its node refuses
// connections.
func TestHAUploadFollowUpNeverMovesToAnEjectedNode(t *testing.T) {
	_, nodes := haCluster(t, 2)
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	u, tagged := openUpload(t, addr, up)
	opened := nodeAt(nodes, tagged.Host)
	other := otherNode(nodes, opened)
	// The other node fails the uploads it is asked to start until ejected
	// (each moves on to the opened node), then recovers.
	other.SetRepositoryUnavailable(true)
	ejectWith(t, up, other.Addr(), func(int) { startUpload(t, addr) })
	other.SetRepositoryUnavailable(false)
	opened.SetRepositoryUnavailable(true)
	other.ResetRequests()
	resp, body := sendAuth(t, addr, http.MethodGet, u.RequestURI())
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upload status with its node failing: %s %s, want its node's 503", resp.Status, body)
	}
	for _, rq := range other.Requests() {
		if strings.HasSuffix(rq.Path, "/"+path.Base(u.Path)) {
			t.Errorf("the ejected node, which holds no such session, got %s %s", rq.Method, rq.Path)
		}
	}
}
