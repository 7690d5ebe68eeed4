#!/usr/bin/env bash
# Whole-machine CPU per small request of several proxies, alternating, for
# an A/B of two builds (or of experiment switches) with more rounds than
# make bench's matrix gives one cell: its medians move by about ±1 µs per
# request between runs, the size of most single changes
# (docs/bench/small-requests.md, "Which layer the gap to the floor is in").
#
#   scripts/bench-ab.sh [-r ROUNDS] [-n REQUESTS] [-c CONNS] [-m METHOD] [-p] NAME=COMMAND...
#
# Builds benchtool and a certificate, starts the bench backend, then starts
# each COMMAND with @ADDR@ replaced by its listen address, @UPSTREAM@ by the
# backend's URL, @CERT@, @KEY@ by the server certificate and key (SNI
# bench.nexmux.test, route bench.nexmux.test=bench). Each round sends
# REQUESTS (60000) METHOD (HEAD) requests over CONNS (32) keep-alive TLS
# connections with `benchtool seq`, to each target in turn (every other
# round in reverse order), and divides the machine's busy time from
# /proc/stat (all but idle and iowait) by the requests. Prints each round,
# then each target's median, then the first target's figure over each
# other's within each round and the median of those ratios (steadier than
# the ratio of the medians on a host whose speed drifts between rounds).
# -p pins the load generator and the backend to the first CPU and each
# target to the second (taskset; a Go target then runs with one P): the
# scheduler no longer decides who shares a core with the proxy, which
# narrows the spread between rounds on a two-core host (figures differ
# from unpinned ones; compare pinned with pinned).
# Run it on an otherwise idle machine. Example:
#
#   N=/tmp/nexmux-new; O=/tmp/nexmux-old
#   scripts/bench-ab.sh -r 6 \
#     'floor=$W/benchtool floor -listen @ADDR@ -upstream @UPSTREAM@ -cert @CERT@ -key @KEY@' \
#     "old=$O serve --listen @ADDR@ --upstream @UPSTREAM@ --cert @CERT@ --key @KEY@ --route bench.nexmux.test=bench --max-conns 0 --max-conns-per-client 0 --max-requests-per-client 0" \
#     "new=$N serve --listen @ADDR@ --upstream @UPSTREAM@ --cert @CERT@ --key @KEY@ --route bench.nexmux.test=bench --max-conns 0 --max-conns-per-client 0 --max-requests-per-client 0"
#
# ($W, in single quotes, is this script's work directory, where benchtool is.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=6 N=60000 CONNS=32 METHOD=HEAD PIN=
while getopts r:n:c:m:p o; do
	case $o in
	r) ROUNDS=$OPTARG ;;
	n) N=$OPTARG ;;
	c) CONNS=$OPTARG ;;
	m) METHOD=$OPTARG ;;
	p) PIN=1 ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $N =~ ^[1-9][0-9]*$ && $CONNS =~ ^[1-9][0-9]*$ ]] || { echo "$0: -r, -n and -c take a whole number above 0" >&2; exit 2; }
(($# > 0)) || { echo "usage: $0 [-r ROUNDS] [-n REQUESTS] [-c CONNS] [-m METHOD] [-p] NAME=COMMAND..." >&2; exit 2; }
# pinA runs the load generator and the backend, pinB prefixes each target.
pinA=() pinB=
if [[ -n $PIN ]]; then
	# Else the backend and every target fail to start, and the first round
	# reports only a target that never answered.
	command -v taskset >/dev/null || { echo "$0: -p needs taskset (util-linux)" >&2; exit 2; }
	read -r first second < <(python3 -c 'import os; c=sorted(os.sched_getaffinity(0)); print(*c[:2])')
	[[ -n ${second:-} ]] || { echo "$0: -p needs two CPUs, this process may use only CPU $first" >&2; exit 2; }
	pinA=(taskset -c "$first") pinB="taskset -c $second "
fi
W=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"' EXIT
(cd scripts/benchtool && go build -o "$W/benchtool" .)
go run ./fixtures/cmd/gencert -dir "$W/certs" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=127.0.0.1:$(port)
"${pinA[@]}" "$W/benchtool" backend -listen "$up" -blob-size 1048576 >"$W/backend.log" 2>&1 &
pids+=($!)
names=() addrs=()
for spec in "$@"; do
	name=${spec%%=*} cmd=${spec#*=} addr=127.0.0.1:$(port)
	cmd=${cmd//@ADDR@/$addr}
	cmd=${cmd//@UPSTREAM@/http://$up}
	cmd=${cmd//@CERT@/$W/certs/server.crt}
	cmd=${cmd//@KEY@/$W/certs/server.key}
	cmd=${cmd//\$W/$W}
	cmd=$pinB$cmd
	eval "exec $cmd" >"$W/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name") addrs+=("$addr")
done
for a in "${addrs[@]}" "$up"; do
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break
		sleep 0.1
	done
done
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
hz=$(getconf CLK_TCK)
declare -A res
round=() ratio=()
for r in $(seq "$ROUNDS"); do
	order=$(seq 0 $((${#names[@]} - 1)))
	((r % 2 == 0)) && order=$(tac <<<"$order")
	for i in $order; do
		coproc CL { "${pinA[@]}" "$W/benchtool" seq -addr "${addrs[$i]}" -sni bench.nexmux.test -ca "$W/certs/ca.crt" \
			-method "$METHOD" -warm 3000 -n "$N" -conns "$CONNS"; }
		cl=$CL_PID
		exec 5<&"${CL[0]}" 6>&"${CL[1]}"
		read -r line <&5
		[[ $line == READY ]] || { echo "bench-ab: ${names[$i]}: $line (see $W/${names[$i]}.log)" >&2; exit 1; }
		b0=$(busy) t0=$(date +%s.%N)
		echo go >&6
		read -r line <&5
		b1=$(busy) t1=$(date +%s.%N)
		exec 5<&- 6>&-
		wait "$cl" 2>/dev/null || true
		us=$(echo "($b1 - $b0) * 1000000 / $hz / $N" | bc -l)
		rps=$(echo "$N / ($t1 - $t0)" | bc -l)
		printf '%-12s round %d: %6.1f µs whole machine per request, %6.0f req/s\n' "${names[$i]}" "$r" "$us" "$rps"
		res[${names[$i]}]+="$us "
		round[$i]=$us
	done
	# Each target against the first, within the round: the two ran a few
	# seconds apart, so a host whose speed drifts moves both alike.
	for i in $(seq 1 $((${#names[@]} - 1))); do
		ratio[$i]+="$(echo "${round[0]} / ${round[$i]}" | bc -l) "
	done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for n in "${names[@]}"; do
	printf '%-12s median %6.2f µs\n' "$n" "$(median <<<"${res[$n]}")"
done
for i in $(seq 1 $((${#names[@]} - 1))); do
	printf '%s ÷ %s per round: median %.3f (rounds %s)\n' "${names[0]}" "${names[$i]}" "$(median <<<"${ratio[$i]}")" \
		"$(tr ' ' '\n' <<<"${ratio[$i]}" | grep . | xargs printf '%.3f ' | sed 's/ $//')"
done
