#!/usr/bin/env bash
# Instructions per small request of the proxy process alone, counted by
# valgrind's callgrind: a count that does not depend on the load of the
# machine (docs/bench/levers.md, "How it was measured").
#
#   scripts/callgrind.sh [ROUNDS]
#
# Builds nexmux and benchtool, then for HEAD and GET alternates the Go floor
# (benchtool floor) and nexmux ROUNDS times (default 2). Each round runs the
# proxy under callgrind with one P and no async preemption (Go's preemption
# signals crash callgrind; one P keeps idle spinning out of the count),
# sends 300 requests on one keep-alive TLS connection, zeroes the counters,
# sends 3000 more and divides the instructions by 3000. The same binary
# varies by 1-4% between rounds. Needs valgrind (apt-get install valgrind).
# CALLGRIND_CONNS=32 spreads the requests over that many connections at
# once, CALLGRIND_PROCS=2 gives the proxy two Ps (callgrind still runs one
# thread at a time), CALLGRIND_CACHE=1 adds valgrind's cache simulation
# (misses per request, printed after the counts). CALLGRIND_NEXMUX=BIN
# counts that nexmux binary instead of building one (an A/B of two builds),
# CALLGRIND_KEEP=DIR keeps each round's callgrind dump there, for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
N=3000
CONNS=${CALLGRIND_CONNS:-1}
PROCS=${CALLGRIND_PROCS:-1}
CACHE=()
[[ ${CALLGRIND_CACHE:-} == 1 ]] && CACHE=(--cache-sim=yes)
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
if [ -n "${CALLGRIND_NEXMUX:-}" ]; then
	cp "$CALLGRIND_NEXMUX" "$W/nexmux"
else
	go build -o "$W/nexmux" ./cmd/nexmux
fi
(cd scripts/benchtool && go build -o "$W/benchtool" .)
go run ./fixtures/cmd/gencert -dir "$W/certs" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACK=$(port)
"$W/benchtool" backend -listen 127.0.0.1:$BACK -blob-size 1048576 >/dev/null 2>&1 &

count() { # count KIND METHOD: prints instructions per request
	local kind=$1 method=$2 addr pid out
	addr=127.0.0.1:$(port)
	out="$W/cg.$kind.$method"
	rm -f "$out".*
	local cmd=("$W/nexmux" serve --listen "$addr" --cert "$W/certs/server.crt" --key "$W/certs/server.key"
		--upstream "http://127.0.0.1:$BACK" --route bench.nexmux.test=bench)
	if [ "$kind" = floor ]; then
		cmd=("$W/benchtool" floor -listen "$addr" -upstream "http://127.0.0.1:$BACK"
			-cert "$W/certs/server.crt" -key "$W/certs/server.key")
	fi
	GOMAXPROCS=$PROCS GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind "${CACHE[@]}" --callgrind-out-file="$out.%p" \
		"${cmd[@]}" >/dev/null 2>&1 &
	pid=$!
	# The port was free when picked, not necessarily when the proxy binds
	# it (another process on the machine may take it meanwhile): wait for
	# this proxy to be the one listening there, or give the round up.
	local listening=
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || break
		if ss -Hltnp "sport = :${addr#*:}" 2>/dev/null | grep -q "pid=$pid,"; then
			listening=1
			break
		fi
		sleep 0.2
	done
	[ -n "$listening" ] || { echo "callgrind.sh: $kind is not listening on $addr" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
	coproc CL { "$W/benchtool" seq -addr "$addr" -ca "$W/certs/ca.crt" -method "$method" -warm 300 -n $N -conns "$CONNS"; }
	local line
	read -r line <&"${CL[0]}"
	[ "$line" = READY ] || { echo "callgrind.sh: client: $line" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
	callgrind_control -z "$pid" >/dev/null 2>&1
	echo go >&"${CL[1]}"
	read -r line <&"${CL[0]}"
	[ "$line" = DONE ] || { echo "callgrind.sh: client: $line" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
	callgrind_control -d "$pid" >/dev/null 2>&1
	sleep 1
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local dump ir
	dump=$(ls -t "$out".*.* | head -1)
	if [ -n "${CALLGRIND_KEEP:-}" ]; then
		mkdir -p "$CALLGRIND_KEEP"
		cp "$dump" "$CALLGRIND_KEEP/$kind.$method.$(date +%s%N)"
	fi
	# Events: Ir, then with the cache simulation Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
	grep -E '^(summary|totals):' "$dump" | head -1 | awk -v n=$N '{
		printf "%.1fk", $2 / n / 1000
		if (NF >= 10) printf " [misses per request: I1 %.0f, D1 read %.0f, D1 write %.0f, LL %.1f]", $5 / n, $6 / n, $7 / n, ($8 + $9 + $10) / n
	}'
}

# counted KIND METHOD is count's result, the round run again (on another
# port) when it could not be counted.
counted() {
	local a
	for a in 1 2 3; do
		count "$@" && return 0
		echo "callgrind.sh: $1 $2 not counted (attempt $a of 3)" >&2
	done
	return 1
}

for method in HEAD GET; do
	for r in $(seq 1 "$ROUNDS"); do
		f=$(counted floor $method)
		x=$(counted nexmux $method)
		echo "$method round $r: floor $f, nexmux $x instructions per request (floor / nexmux $(awk -v a="${f%k}" -v b="${x%k}" 'BEGIN { printf "%.3f", a / b }'))"
	done
done
