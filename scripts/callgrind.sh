#!/usr/bin/env bash
# Instructions per request of the proxy process alone, counted by
# valgrind's callgrind: a count that does not depend on the load of the
# machine (docs/bench/levers.md, "How it was measured").
#
#   scripts/callgrind.sh [ROUNDS]
#
# Builds nexmux and benchtool, then for each kind of CALLGRIND_KINDS
# (default "HEAD GET") alternates a reference and nexmux ROUNDS times
# (default 2). Each round runs the proxy under callgrind with one P and no
# async preemption (Go's preemption signals crash callgrind; one P keeps
# idle spinning out of the count), sends warm-up requests (benchtool seq),
# zeroes the counters, sends the counted ones and divides the instructions
# by their number. The kinds, warm-up + counted:
#
#   HEAD, GET         a small manifest request on one keep-alive TLS
#                     connection, 300 + 3000; reference: the Go floor
#                     (benchtool floor)
#   handshake         a new connection per request: full TLS handshake (no
#                     resumption), one HEAD, close; 30 + 2000 (with fewer, a
#                     round holds a GC cycle or none); floor
#   pull, push        GET of the backend's 1 MiB blob, or PATCH of 1 MiB
#                     then the PUT, on keep-alive; 5 + 30, counted per MiB;
#                     floor
#   routes-HEAD,      HEAD and handshake against nexmux with a --config of
#   routes-handshake  10,000 routes (benchtool routes, as bench.sh), the
#                     names r00000.nexmux.test...; reference: nexmux with
#                     its one --route (the floor has no routes)
#
# The same binary's rounds differ by the runtime's idle scheduling and by
# how many GC cycles fall among the counted requests. Needs valgrind
# (apt-get install valgrind).
# CALLGRIND_CONNS=32 spreads HEAD/GET (handshakes: that many clients
# connecting at once) over that many connections at once,
# CALLGRIND_PROCS=2 gives the proxy two Ps (callgrind still runs one
# thread at a time), CALLGRIND_CACHE=1 adds valgrind's cache simulation
# (misses per request, per MiB for pull and push, printed after the
# counts). CALLGRIND_NEXMUX=BIN counts that nexmux binary instead of
# building one; with
# CALLGRIND_NEXMUX_B=BIN2 too, each round counts BIN then BIN2 instead of
# the reference and nexmux (an A/B of two builds in one run).
# CALLGRIND_N=COUNT counts COUNT requests of every kind instead of its own.
# CALLGRIND_KEEP=DIR keeps each round's callgrind dump there, for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
KINDS=${CALLGRIND_KINDS:-HEAD GET}
CONNS=${CALLGRIND_CONNS:-1}
PROCS=${CALLGRIND_PROCS:-1}
ROUTES=10000
CACHE=()
[[ ${CALLGRIND_CACHE:-} == 1 ]] && CACHE=(--cache-sim=yes)
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
for k in $KINDS; do
	case $k in
	HEAD | GET | handshake | pull | push | routes-HEAD | routes-handshake) ;;
	*) echo "callgrind.sh: unknown kind $k (HEAD GET handshake pull push routes-HEAD routes-handshake)" >&2; exit 2 ;;
	esac
done
[[ -n ${CALLGRIND_NEXMUX_B:-} && -z ${CALLGRIND_NEXMUX:-} ]] && { echo "callgrind.sh: CALLGRIND_NEXMUX_B needs CALLGRIND_NEXMUX" >&2; exit 2; }
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
if [ -n "${CALLGRIND_NEXMUX:-}" ]; then
	cp "$CALLGRIND_NEXMUX" "$W/nexmux"
else
	go build -o "$W/nexmux" ./cmd/nexmux
fi
[ -n "${CALLGRIND_NEXMUX_B:-}" ] && cp "$CALLGRIND_NEXMUX_B" "$W/nexmux-b"
(cd scripts/benchtool && go build -o "$W/benchtool" .)
go run ./fixtures/cmd/gencert -dir "$W/certs" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACK=$(port)
"$W/benchtool" backend -listen 127.0.0.1:$BACK -blob-size 1048576 >/dev/null 2>&1 &

# seq_args KIND: the client's flags (SEQ), the counted requests (N) and
# what a count is per (UNIT), for KIND.
seq_args() {
	local names=(-sni-fmt "r%05d.nexmux.test" -sni-n $ROUTES)
	UNIT=request
	case $1 in
	HEAD | GET) SEQ=(-method "$1" -warm 300 -n 3000 -conns "$CONNS") N=3000 ;;
	handshake) SEQ=(-kind handshake -warm 30 -n 2000 -conns "$CONNS") N=2000 ;;
	pull) SEQ=(-kind pull -blob-size 1048576 -warm 5 -n 30) N=30 UNIT=MiB ;;
	push) SEQ=(-kind push -push-size 1048576 -warm 5 -n 30) N=30 UNIT=MiB ;;
	routes-HEAD) SEQ=(-method HEAD -warm 300 -n 3000 -conns "$CONNS" "${names[@]}") N=3000 ;;
	routes-handshake) SEQ=(-kind handshake -warm 30 -n 2000 -conns "$CONNS" "${names[@]}") N=2000 ;;
	esac
	if [ -n "${CALLGRIND_N:-}" ]; then
		N=$CALLGRIND_N
		SEQ+=(-n "$N")
	fi
}

# count PROXY KIND prints the instructions per UNIT of PROXY: floor (the Go
# floor), one (nexmux with one --route: KIND's requests without the route
# names), a or b (nexmux or CALLGRIND_NEXMUX_B; with the 10,000 routes for
# the routes kinds).
count() {
	local proxy=$1 kind=$2 addr pid out bin=$W/nexmux
	addr=127.0.0.1:$(port)
	out="$W/cg.$proxy.$kind"
	rm -f "$out".*
	[ "$proxy" = b ] && bin=$W/nexmux-b
	local base=${kind#routes-}
	seq_args "$base"
	local cmd=("$bin" serve --listen "$addr" --cert "$W/certs/server.crt" --key "$W/certs/server.key"
		--upstream "http://127.0.0.1:$BACK" --route bench.nexmux.test=bench)
	if [ "$proxy" = floor ]; then
		cmd=("$W/benchtool" floor -listen "$addr" -upstream "http://127.0.0.1:$BACK"
			-cert "$W/certs/server.crt" -key "$W/certs/server.key")
	elif [ "$base" != "$kind" ] && [ "$proxy" != one ]; then
		seq_args "$kind"
		"$W/benchtool" routes -n $ROUTES -hostfmt "r%05d.nexmux.test" -repo bench \
			-set "listen=$addr" -set "upstream=http://127.0.0.1:$BACK" \
			-set "cert=$W/certs/server.crt" -set "key=$W/certs/server.key" -out "$W/routes.yaml"
		cmd=("$bin" serve --config "$W/routes.yaml")
	fi
	GOMAXPROCS=$PROCS GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind "${CACHE[@]}" --callgrind-out-file="$out.%p" \
		"${cmd[@]}" >/dev/null 2>&1 &
	pid=$!
	# The port was free when picked, not necessarily when the proxy binds
	# it (another process on the machine may take it meanwhile): wait for
	# this proxy to be the one listening there, or give the round up.
	local listening=
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		if ss -Hltnp "sport = :${addr#*:}" 2>/dev/null | grep -q "pid=$pid,"; then
			listening=1
			break
		fi
		sleep 0.2
	done
	[ -n "$listening" ] || { echo "callgrind.sh: $proxy is not listening on $addr" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
	coproc CL { "$W/benchtool" seq -addr "$addr" -ca "$W/certs/ca.crt" "${SEQ[@]}" 2>&1; }
	local line
	read -r line <&"${CL[0]}" || true
	[ "$line" = READY ] || { echo "callgrind.sh: client: $line" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
	callgrind_control -z "$pid" >/dev/null 2>&1
	echo go >&"${CL[1]}"
	read -r line <&"${CL[0]}" || true
	[ "$line" = DONE ] || { echo "callgrind.sh: client: $line" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1; }
	callgrind_control -d "$pid" >/dev/null 2>&1
	sleep 1
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local dump
	dump=$(ls -t "$out".*.* | head -1)
	if [ -n "${CALLGRIND_KEEP:-}" ]; then
		mkdir -p "$CALLGRIND_KEEP"
		cp "$dump" "$CALLGRIND_KEEP/$proxy.$kind.$(date +%s%N)"
	fi
	# Events: Ir, then with the cache simulation Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
	grep -E '^(summary|totals):' "$dump" | head -1 | awk -v n="$N" -v unit="$UNIT" '{
		printf "%.1fk", $2 / n / 1000
		if (NF >= 10) printf " [misses per %s: I1 %.0f, D1 read %.0f, D1 write %.0f, LL %.1f]", unit, $5 / n, $6 / n, $7 / n, ($8 + $9 + $10) / n
	}'
}

# counted PROXY KIND is count's result, the round run again (on another
# port) when it could not be counted.
counted() {
	local a
	for a in 1 2 3; do
		count "$@" && return 0
		echo "callgrind.sh: $1 $2 not counted (attempt $a of 3)" >&2
	done
	return 1
}

ratio() { awk -v a="${1%%k*}" -v b="${2%%k*}" 'BEGIN { printf "%.3f", a / b }'; }

for kind in $KINDS; do
	seq_args "${kind#routes-}"
	for r in $(seq 1 "$ROUNDS"); do
		if [ -n "${CALLGRIND_NEXMUX_B:-}" ]; then
			x=$(counted a "$kind")
			y=$(counted b "$kind")
			echo "$kind round $r: A $x, B $y instructions per $UNIT (B / A $(ratio "$y" "$x"))"
		elif [ "${kind#routes-}" != "$kind" ]; then
			f=$(counted one "$kind")
			x=$(counted a "$kind")
			echo "$kind round $r: nexmux 1 route $f, $ROUTES routes $x instructions per $UNIT ($ROUTES / 1 $(ratio "$x" "$f"))"
		else
			f=$(counted floor "$kind")
			x=$(counted a "$kind")
			echo "$kind round $r: floor $f, nexmux $x instructions per $UNIT (floor / nexmux $(ratio "$f" "$x"))"
		fi
	done
done
