package mux

import "testing"

// benchReq is a docker client's manifest HEAD: what framing scans per small request.
var benchReq = []byte("HEAD /v2/library/alpine/manifests/3.20 HTTP/1.1\r\nHost: team-a.nexmux.test\r\nUser-Agent: docker/27.5.1 go/go1.22.10 git-commit/4c9b3b0 kernel/6.1.0 os/linux arch/amd64 UpstreamClient(Docker-Client/27.5.1 \\(linux\\))\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\nAuthorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0ZWFtLWEiLCJhY2Nlc3MiOltdfQ.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl\r\nAccept-Encoding: gzip\r\n\r\n")

func BenchmarkFramingScan(b *testing.B) {
	var f framing
	b.SetBytes(int64(len(benchReq)))
	for b.Loop() {
		f.scan(benchReq)
	}
}
