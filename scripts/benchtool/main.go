// Command benchtool is the measuring half of `make bench` (scripts/bench.sh
// starts and stops the processes; this program talks to them):
//
//	benchtool backend   a Nexus-shaped backend: /repository/<repo>/v2/... blobs
//	                    from page cache (memfd + sendfile), HEAD manifests, and
//	                    PATCH/PUT uploads that discard and count the body
//	benchtool floor     the Go floor: httputil.ReverseProxy behind crypto/tls
//	                    and nothing else, the parts nexmux is built on
//	benchtool routes    writes a nexmux --config YAML with N --route entries
//	benchtool run       measures every target with the same client and writes
//	                    the raw results as JSON
//	benchtool report    turns results JSON into the Markdown table, the PNG
//	                    chart and the README section
//	benchtool seq       requests one after another (manifests, handshakes,
//	                    blob pulls or pushes), paused for a line on stdin
//	                    (scripts/callgrind.sh)
//	benchtool instr     adds scripts/callgrind.sh's instruction counts
//	                    (stdin) to a results JSON file
//
// Everything talks to 127.0.0.1 only.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "backend":
		err = backendMain(args)
	case "floor":
		err = floorMain(args)
	case "routes":
		err = routesMain(args)
	case "run":
		err = runMain(args)
	case "report":
		err = reportMain(args)
	case "seq":
		err = seqMain(args)
	case "instr":
		err = instrMain(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchtool backend|floor|routes|run|report|seq|instr [flags] (see scripts/bench.sh)")
	os.Exit(2)
}
