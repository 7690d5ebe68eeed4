package l7

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// An upload reaches Nexus while the client is still sending it: nexmux
// neither waits for the whole body (spooling it to memory or disk, as a
// proxy that needs a Content-Length must) nor asks for a length (no 411 for
// docker's chunked PATCH). The client sends 1 MiB and then waits for Nexus
// to have read part of it; a proxy that held the body back would never
// let Nexus see a byte and the wait ends the test.
func TestUploadStreamsToNexusWhileTheClientSends(t *testing.T) {
	const first = 1 << 20
	began := make(chan struct{})
	var gotLen int64
	var gotTE []string
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		gotLen, gotTE = r.ContentLength, r.TransferEncoding
		if _, err := io.ReadFull(r.Body, make([]byte, 64<<10)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		close(began)
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Range", "0-"+strconv.FormatInt(64<<10+n-1, 10))
		w.WriteHeader(http.StatusAccepted)
	})
	addr := stallProxy(t, node, 0, 0)

	pr, pw := io.Pipe()
	total := make(chan int, 1)
	go func() {
		chunk := bytes.Repeat([]byte("layer-bytes-"), 1<<10)
		sent := 0
		defer func() { total <- sent }()
		for sent < first {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			sent += len(chunk)
		}
		select {
		case <-began:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(errors.New("Nexus saw no byte of the body while the client waited 10 s with 1 MiB sent"))
			return
		}
		if _, err := pw.Write(chunk); err == nil {
			sent += len(chunk)
		}
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPatch, "http://"+addr+"/v2/app/blobs/uploads/u1", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "team-a.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	if want := "0-" + strconv.Itoa(<-total-1); resp.Header.Get("Range") != want {
		t.Fatalf("Nexus got Range %q, want %q", resp.Header.Get("Range"), want)
	}
	if gotLen != -1 || len(gotTE) != 1 || gotTE[0] != "chunked" {
		t.Fatalf("Nexus got Content-Length %d, Transfer-Encoding %q; want the client's chunked body, unsized", gotLen, gotTE)
	}
}
