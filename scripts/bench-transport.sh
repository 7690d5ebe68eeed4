#!/usr/bin/env bash
# The --upstream-transport experiment (issue 19 req. 3): one backend
# (scripts/benchtool backend), two nexmux processes in front of it, one with
# the std transport (net/http) and one with sync (internal/h1rt), measured
# interleaved with wrk: HEAD and GET of a small manifest at 4 and 32
# connections, ROUNDS rounds (order flipped every round), then blob pull and
# push throughput with curl. For each run: req/s, whole-machine CPU per
# request (/proc/stat, every field but idle and iowait, guest excluded as it
# is counted in user) and nexmux's own CPU per request (/proc/PID/stat).
#
# Run only under the bench lock: flock /tmp/nexmux-e2e.lock scripts/bench-transport.sh
# Knobs: ROUNDS (5), SECONDS_PER_RUN (3), BLOB_MIB (256), BLOB_ROUNDS (3),
# PORT_BASE (19600). Writes $OUT (default /tmp/bench-transport.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-3}
BLOB_MIB=${BLOB_MIB:-256}
BLOB_ROUNDS=${BLOB_ROUNDS:-3}
PORT_BASE=${PORT_BASE:-19600}
OUT=${OUT:-/tmp/bench-transport.tsv}
# wrk takes the TLS server name from the URL: the name resolves through an
# /etc/hosts line of ours, removed on exit (rewritten in place, as
# scripts/e2e.sh does: /etc/hosts may be a bind mount).
HOST=transport.bench.test
TAG=nexmux-bench-transport
remove_hosts_line() {
	grep -q "# $TAG\$" /etc/hosts 2>/dev/null || return 0
	local tmp
	tmp=$(mktemp)
	grep -v "# $TAG\$" /etc/hosts >"$tmp" || true
	cat "$tmp" >/etc/hosts
	rm -f "$tmp"
}

while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^NEXMUX_' || true)
WORK=$(mktemp -d /tmp/bench-transport.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
	remove_hosts_line
}
trap cleanup EXIT
remove_hosts_line
echo "127.0.0.1 $HOST # $TAG" >>/etc/hosts

go build -o "$WORK/nexmux" ./cmd/nexmux
(cd scripts/benchtool && go build -o "$WORK/benchtool" .)
go build -o "$WORK/gencert" ./fixtures/cmd/gencert
"$WORK/gencert" -dir "$WORK/certs" -hosts "*.bench.test,bench.test,localhost,127.0.0.1" >/dev/null

P_BACKEND=$((PORT_BASE + 1))
P_STD=$((PORT_BASE + 2))
P_SYNC=$((PORT_BASE + 3))
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 200); do port_open "$1" && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

"$WORK/benchtool" backend -listen "127.0.0.1:$P_BACKEND" -blob-size $((BLOB_MIB << 20)) >"$WORK/backend.log" 2>&1 &
pids+=($!)
BACKEND_PID=$!
declare -A PID
for tr in std sync; do
	port=$P_STD
	[[ $tr == sync ]] && port=$P_SYNC
	"$WORK/nexmux" serve --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$P_BACKEND" \
		--cert "$WORK/certs/server.crt" --key "$WORK/certs/server.key" --route "$HOST=bench" \
		--max-conns 0 --max-conns-per-client 0 --max-requests-per-client 0 \
		--log-level error --upstream-transport "$tr" >"$WORK/nexmux-$tr.log" 2>&1 &
	pids+=($!)
	PID[$tr]=$!
done
wait_port "$P_BACKEND"
wait_port "$P_STD"
wait_port "$P_SYNC"
port_of() { if [[ $1 == sync ]]; then echo "$P_SYNC"; else echo "$P_STD"; fi; }

echo 'wrk.method = "HEAD"' >"$WORK/head.lua"
echo 'wrk.method = "GET"' >"$WORK/get.lua"
HZ=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }

printf 'round\tmethod\tconns\ttransport\treqs\treq_s\tmachine_us_per_req\tnexmux_us_per_req\tbackend_us_per_req\tp50_ms\tload1\n' >"$OUT"
run_small() {
	local round=$1 method=$2 conns=$3 tr=$4 script m0 m1 n0 n1 b0 b1 out reqs rps p50
	script=$WORK/$(tr '[:upper:]' '[:lower:]' <<<"$method").lua
	local url="https://$HOST:$(port_of "$tr")/v2/bench/app/manifests/latest"
	wrk -t 2 -c "$conns" -d 1 -s "$script" "$url" >/dev/null # warm the pool
	m0=$(busy) n0=$(proc_cpu "${PID[$tr]}") b0=$(proc_cpu "$BACKEND_PID")
	out=$(wrk -t 2 -c "$conns" -d "$SECS" --latency -s "$script" "$url")
	m1=$(busy) n1=$(proc_cpu "${PID[$tr]}") b1=$(proc_cpu "$BACKEND_PID")
	reqs=$(awk '/requests in/{print $1}' <<<"$out")
	rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
	p50=$(awk '$1=="50%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "non-2xx answers: $out" >&2
		exit 1
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%s\t%s\n' "$round" "$method" "$conns" "$tr" "$reqs" "$rps" \
		"$(bc -l <<<"($m1-$m0)*1000000/$HZ/$reqs")" "$(bc -l <<<"($n1-$n0)*1000000/$HZ/$reqs")" \
		"$(bc -l <<<"($b1-$b0)*1000000/$HZ/$reqs")" "$p50" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT"
}

for ((r = 1; r <= ROUNDS; r++)); do
	order=(std sync)
	((r % 2 == 0)) && order=(sync std)
	for method in HEAD GET; do
		for conns in 4 32; do
			for tr in "${order[@]}"; do run_small "$r" "$method" "$conns" "$tr"; done
		done
	done
done

echo
echo "medians (machine µs/req, nexmux µs/req, req/s):"
for method in HEAD GET; do
	for conns in 4 32; do
		for tr in std sync; do
			awk -F'\t' -v m="$method" -v c="$conns" -v t="$tr" '$2==m && $3==c && $4==t {print $7, $8, $6}' "$OUT" |
				sort -n | awk -v m="$method" -v c="$conns" -v t="$tr" '{a[NR]=$1; b[NR]=$2; q[NR]=$3} END {
					n=asort(a); asort(b); asort(q); i=int((n+1)/2); printf "%s %s %s: machine %.1f  nexmux %.1f  req/s %.0f\n", m, c, t, a[i], b[i], q[i] }'
		done
	done
done

# Blob pull and push through each transport (MB/s as curl reports it).
printf '\nblob\ttransport\tround\tMB_s\n' | tee -a "$OUT"
for ((r = 1; r <= BLOB_ROUNDS; r++)); do
	for tr in std sync; do
		base="https://$HOST:$(port_of "$tr")/v2/bench/app"
		pull=$(curl -sk -o /dev/null -w '%{speed_download}' "$base/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000")
		push=$(head -c $((BLOB_MIB << 20)) /dev/zero | curl -sk -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
			-H 'Transfer-Encoding: chunked' -T - -w '%{speed_upload}' "$base/blobs/uploads/$r")
		printf 'pull\t%s\t%s\t%.0f\npush\t%s\t%s\t%.0f\n' "$tr" "$r" "$(bc -l <<<"$pull/1000000")" "$tr" "$r" "$(bc -l <<<"$push/1000000")" | tee -a "$OUT"
	done
done
