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
# Knobs: ROUNDS (5), SECONDS_PER_RUN (3), BLOB_MIB (512), BLOB_ROUNDS (4),
# PORT_BASE (19600). Writes $OUT (default /tmp/bench-transport.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-3}
BLOB_MIB=${BLOB_MIB:-512}
BLOB_ROUNDS=${BLOB_ROUNDS:-4}
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

HZ=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# context switches of every thread of a process (threads that exited are lost)
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/{n+=$2} END{print n}'; }

# HEAD with ab (wrk waits for a HEAD answer's Content-Length of body and
# counts nothing), GET with wrk; the client's own CPU from /usr/bin/time.
# client_us + nexmux_us + backend_us is the test's own share of the machine
# (the box is shared: machine_us also holds other sessions' work; load1
# says how much).
printf 'round\tmethod\tconns\ttransport\treqs\treq_s\tmachine_us\tnexmux_us\tbackend_us\tclient_us\tload1\tnexmux_ctxsw\n' >"$OUT"
run_small() {
	local round=$1 method=$2 conns=$3 tr=$4 m0 m1 n0 n1 b0 b1 out reqs rps cpu s0 s1
	local url="https://$HOST:$(port_of "$tr")/v2/bench/app/manifests/latest"
	local cmd=(wrk -t 2 -c "$conns" -d "$SECS" "$url")
	if [[ $method == HEAD ]]; then
		cmd=(ab -k -i -q -c "$conns" -t "$SECS" -n 100000000 "$url")
	fi
	"${cmd[@]}" >/dev/null 2>&1 || true # warm the pools (a full run: ab has no shorter one)
	s0=$(ctxsw "${PID[$tr]}")
	m0=$(busy) n0=$(proc_cpu "${PID[$tr]}") b0=$(proc_cpu "$BACKEND_PID")
	out=$(/usr/bin/time -f 'CPU %U %S' "${cmd[@]}" 2>&1)
	m1=$(busy) n1=$(proc_cpu "${PID[$tr]}") b1=$(proc_cpu "$BACKEND_PID")
	s1=$(ctxsw "${PID[$tr]}")
	if [[ $method == HEAD ]]; then
		reqs=$(awk '/^Complete requests:/{print $3}' <<<"$out")
		rps=$(awk '/^Requests per second:/{print $4}' <<<"$out")
		grep -Eq '^(Failed requests|Non-2xx responses): +[1-9]' <<<"$out" && { echo "errors: $out" >&2; exit 1; }
	else
		reqs=$(awk '/requests in/{print $1}' <<<"$out")
		rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
		grep -q 'Non-2xx\|Socket errors' <<<"$out" && { echo "errors: $out" >&2; exit 1; }
	fi
	cpu=$(awk '/^CPU /{print $2+$3}' <<<"$out")
	printf '%s\t%s\t%s\t%s\t%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%.2f\n' "$round" "$method" "$conns" "$tr" "$reqs" "$rps" \
		"$(bc -l <<<"($m1-$m0)*1000000/$HZ/$reqs")" "$(bc -l <<<"($n1-$n0)*1000000/$HZ/$reqs")" \
		"$(bc -l <<<"($b1-$b0)*1000000/$HZ/$reqs")" "$(bc -l <<<"$cpu*1000000/$reqs")" "$(cut -d' ' -f1 /proc/loadavg)" "$(bc -l <<<"($s1-$s0)/$reqs")" | tee -a "$OUT"
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
python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r.get("method") in ("HEAD", "GET")]
med = lambda k, rs: statistics.median(float(r[k]) for r in rs)
print("medians: CPU µs per request (machine; test processes = client+nexmux+backend; nexmux), req/s; sync/std")
for m in ("HEAD", "GET"):
    for c in ("4", "32"):
        v = {}
        for t in ("std", "sync"):
            rs = [r for r in rows if r["method"] == m and r["conns"] == c and r["transport"] == t]
            for r in rs:
                r["procs"] = float(r["client_us"]) + float(r["nexmux_us"]) + float(r["backend_us"])
            v[t] = (med("machine_us", rs), med("procs", rs), med("nexmux_us", rs), med("req_s", rs))
            print(f"{m:4} {c:>2} {t:4}: machine {v[t][0]:6.1f}  procs {v[t][1]:6.1f}  nexmux {v[t][2]:5.1f}  req/s {v[t][3]:6.0f}")
            # The quieter half: runs where the machine spent least outside the test's processes.
            q = sorted(rs, key=lambda r: float(r["machine_us"]) - r["procs"])[: (len(rs) + 1) // 2]
            print(f"{'':12}quieter half: machine {med('machine_us', q):6.1f}  procs {statistics.median(r['procs'] for r in q):6.1f}")
        print(f"{m:4} {c:>2} sync/std: machine {v['sync'][0]/v['std'][0]:.3f}  procs {v['sync'][1]/v['std'][1]:.3f}  nexmux {v['sync'][2]/v['std'][2]:.3f}  req/s {v['sync'][3]/v['std'][3]:.3f}")
PY

# Blob pull and push through each transport (MB/s as curl reports it).
printf '\nblob\ttransport\tround\tMB_s\n' | tee "$OUT.blob"
for ((r = 1; r <= BLOB_ROUNDS; r++)); do
	order=(std sync)
	((r % 2 == 0)) && order=(sync std)
	for tr in "${order[@]}"; do
		base="https://$HOST:$(port_of "$tr")/v2/bench/app"
		pull=$(curl -sk -o /dev/null -w '%{speed_download}' "$base/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000")
		push=$(head -c $((BLOB_MIB << 20)) /dev/zero | curl -sk -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
			-H 'Transfer-Encoding: chunked' -T - -w '%{speed_upload}' "$base/blobs/uploads/$r")
		printf 'pull\t%s\t%s\t%.0f\npush\t%s\t%s\t%.0f\n' "$tr" "$r" "$(bc -l <<<"$pull/1000000")" "$tr" "$r" "$(bc -l <<<"$push/1000000")" | tee -a "$OUT.blob"
	done
done
