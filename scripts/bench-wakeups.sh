#!/usr/bin/env bash
# Thread switches per small request (issue 19: what stops the latency and
# CPU targets). One backend (benchtool backend) and four proxies in front of
# it: nexmux with two Ps and with one, the Go floor (benchtool floor) with
# two, and nginx with the bench's tuned configuration (two workers). For
# each, interleaved over ROUNDS rounds, `benchtool seq` sends N HEAD requests
# on CONNS keep-alive TLS connections (1: one request at a time, as the
# latency row; 32: the saturated rows); the proxy's CPU time and its context
# switches (voluntary and involuntary, every thread of every process) are
# read from /proc around them. Prints one line per round and target, then
# the medians: wall µs per request (CONNS=1: the mean latency), proxy CPU
# µs per request, switches per request.
#
# Run under the bench lock: flock /tmp/nexmux-e2e.lock scripts/bench-wakeups.sh
# Knobs: ROUNDS (5), N (3000), CONNS (1), PORT_BASE (19720).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
N=${N:-3000}
CONNS=${CONNS:-1}
PORT_BASE=${PORT_BASE:-19720}
command -v nginx >/dev/null || { echo "bench-wakeups.sh: needs nginx (apt-get install nginx-light)" >&2; exit 1; }
W=$(mktemp -d /tmp/bench-wakeups.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
go build -o "$W/nexmux" ./cmd/nexmux
(cd scripts/benchtool && go build -o "$W/benchtool" .)
go run ./fixtures/cmd/gencert -dir "$W/certs" >/dev/null
CERT=$W/certs/server.crt KEY=$W/certs/server.key HOST=bench.nexmux.test
P_BACK=$((PORT_BASE + 1))
"$W/benchtool" backend -listen "127.0.0.1:$P_BACK" -blob-size 1048576 >"$W/backend.log" 2>&1 &
pids+=($!)

names=() addrs=() tpids=()
add() { names+=("$1") addrs+=("$2") tpids+=("$3"); }
nexmux() { # nexmux NAME PORT PROCS
	GOMAXPROCS=$3 "$W/nexmux" serve --listen "127.0.0.1:$2" --upstream "http://127.0.0.1:$P_BACK" \
		--cert "$CERT" --key "$KEY" --route "$HOST=bench" --log-level error \
		--max-conns 0 --max-conns-per-client 0 --max-requests-per-client 0 >"$W/$1.log" 2>&1 &
	pids+=($!)
	add "$1" "127.0.0.1:$2" $!
}
nexmux nexmux-2P $((PORT_BASE + 2)) 2
nexmux nexmux-1P $((PORT_BASE + 3)) 1
GOMAXPROCS=2 "$W/benchtool" floor -listen "127.0.0.1:$((PORT_BASE + 4))" -upstream "http://127.0.0.1:$P_BACK" \
	-cert "$CERT" -key "$KEY" >"$W/floor.log" 2>&1 &
pids+=($!)
add floor-2P "127.0.0.1:$((PORT_BASE + 4))" $!
# scripts/bench.sh's tuned configuration, two workers.
mkdir -p "$W/nginx"
cat >"$W/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 2;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log $W/nginx/access.log;
    client_body_temp_path $W/nginx/cb; proxy_temp_path $W/nginx/px; fastcgi_temp_path $W/nginx/fc;
    uwsgi_temp_path $W/nginx/uw; scgi_temp_path $W/nginx/sc;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $CERT; ssl_certificate_key $KEY;
    upstream nexus { server 127.0.0.1:$P_BACK; keepalive 64; keepalive_requests 100000; }
    proxy_http_version 1.1; proxy_request_buffering off; proxy_buffering on;
    proxy_buffer_size 64k; proxy_buffers 32 64k; proxy_busy_buffers_size 256k;
    proxy_max_temp_file_size 0; keepalive_requests 100000;
    server {
        listen 127.0.0.1:$((PORT_BASE + 5)) ssl;
        server_name $HOST;
        location /v2/ {
            proxy_pass http://nexus/repository/bench/v2/;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
NGINX
nginx -p "$W/nginx" -e "$W/nginx/error.log" -c "$W/nginx/nginx.conf" >"$W/nginx.log" 2>&1 &
pids+=($!)
add nginx-tuned "127.0.0.1:$((PORT_BASE + 5))" $!

for a in "127.0.0.1:$P_BACK" "${addrs[@]}"; do
	for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null && break; sleep 0.1; done
done

procs() { echo "$1"; pgrep -P "$1" || true; } # nginx: master and workers
cpu_ticks() { local p s=0; for p in $(procs "$1"); do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
switches() {
	local p s=0
	for p in $(procs "$1"); do
		s=$((s + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/_ctxt_switches/{n+=$2} END{print n+0}')))
	done
	echo $s
}
HZ=$(getconf CLK_TCK)
OUT=$W/rows.tsv
measure() { # measure ROUND INDEX
	local i=$2 line c0 c1 s0 s1 t0 t1
	coproc CL { "$W/benchtool" seq -addr "${addrs[$i]}" -sni "$HOST" -ca "$W/certs/ca.crt" -method HEAD -warm 300 -n "$N" -conns "$CONNS"; }
	read -r line <&"${CL[0]}"
	[[ $line == READY ]] || { echo "bench-wakeups.sh: ${names[$i]}: $line" >&2; exit 1; }
	c0=$(cpu_ticks "${tpids[$i]}") s0=$(switches "${tpids[$i]}") t0=$(date +%s%N)
	echo go >&"${CL[1]}"
	read -r line <&"${CL[0]}"
	t1=$(date +%s%N) c1=$(cpu_ticks "${tpids[$i]}") s1=$(switches "${tpids[$i]}")
	[[ $line == DONE ]] || { echo "bench-wakeups.sh: ${names[$i]}: $line" >&2; exit 1; }
	[[ -n ${CL_PID:-} ]] && { wait "$CL_PID" 2>/dev/null || true; }
	awk -v r="$1" -v n="${names[$i]}" -v w=$((t1 - t0)) -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v hz="$HZ" -v k="$N" \
		'BEGIN{printf "%s\t%s\t%.1f\t%.1f\t%.2f\n", r, n, w/1000/k, c*1e6/hz/k, s/k}' | tee -a "$OUT"
}
printf 'round\ttarget\twall_us_per_req\tproxy_cpu_us_per_req\tswitches_per_req\n'
for ((r = 1; r <= ROUNDS; r++)); do
	order=(0 1 2 3)
	((r % 2 == 0)) && order=(3 2 1 0)
	for i in "${order[@]}"; do measure "$r" "$i"; done
done
echo "medians over $ROUNDS rounds, $N HEAD requests each on $CONNS connection(s):"
for n in "${names[@]}"; do
	awk -F'\t' -v n="$n" '$2==n' "$OUT" | sort -t$'\t' -k3,3n | awk -F'\t' '{w[NR]=$3} END{printf "%s\twall %s", $2, w[int((NR+1)/2)]}'
	for col in 4 5; do
		awk -F'\t' -v n="$n" '$2==n' "$OUT" | sort -t$'\t' -k${col},${col}n | awk -F'\t' -v c=$col '{v[NR]=$c} END{printf "\t%s %s", (c==4?"cpu":"switches"), v[int((NR+1)/2)]}'
	done
	echo
done
