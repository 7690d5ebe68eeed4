#!/usr/bin/env bash
# make bench: nexmux against nginx (Sonatype's documented config and a tuned
# one) and against the backend served over TLS with no proxy hop, on this
# machine, on loopback, with one certificate (ECDSA P-256), one backend and
# one client (scripts/benchtool); the node-count row adds backends and a
# nexmux with several --upstream nodes. Prints the table and writes
# docs/bench/results.md, results.png, results.json and README-section.md.
#
# The small-request matrix (issue 19) loads every target with three
# generators: benchtool's own Go client, wrk (GET) and ab (HEAD and GET),
# both from Debian; wrk takes SNI from the URL's host, so while the bench
# runs /etc/hosts maps registry.bench.test to 127.0.0.1 (a line tagged
# "# nexmux-bench", removed on exit).
#
# Needs root to install nginx, wrk and ab with apt when they are missing,
# and to add the /etc/hosts line. Every process it starts is stopped on
# exit (trap), whatever happens.
#
# Knobs (environment): BENCH_BLOB_MIB (1024), BENCH_REPS (5), BENCH_ROUNDS (5),
# BENCH_SMALL_ROUNDS (3), BENCH_SMALL_SECONDS (2), BENCH_SMALL_CONNS (4,32),
# BENCH_RATE_SECONDS (3, the route-count rows), BENCH_HS_SECONDS (3), BENCH_HS_WORKERS (32),
# BENCH_IDLE_CONNS (10000), BENCH_ROUTES (10000), BENCH_NODES (3),
# BENCH_NODE_STREAMS (3), BENCH_NODE_ROUNDS (9), BENCH_NODE_PROCS (1: one
# backend process serves every node's port; 3: one process per node),
# BENCH_ONLY (subset:
# pull,push,small,handshake,resume,latency,idle,routes,nodes (rate: the
# same as small); only those are
# measured and replace their part of BENCH_OUT/results.json, e.g.
# BENCH_ONLY=nodes for the node-count row alone; BENCH_ONLY=instr: the
# instruction counts of scripts/callgrind.sh alone), BENCH_OUT (docs/bench),
# BENCH_PORT_BASE (19400), BENCH_PROFILE=DIR (builds nexmux with
# net/http/pprof through a go build -overlay, serves pprof from nexmux and
# the Go floor, and writes CPU profiles of both under each generator to
# DIR; for docs/bench/small-requests.md, not for the committed figures),
# BENCH_CALLGRIND_ROUNDS (2: alternating rounds of scripts/callgrind.sh,
# run after the small requests; 0 skips them), BENCH_KEEP=1 keeps the work directory (logs,
# configs) for a look afterwards.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)

BLOB_MIB=${BENCH_BLOB_MIB:-1024}
REPS=${BENCH_REPS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
SMALL_ROUNDS=${BENCH_SMALL_ROUNDS:-3}
SMALL_SECONDS=${BENCH_SMALL_SECONDS:-2}
SMALL_CONNS=${BENCH_SMALL_CONNS:-4,32}
RATE_SECONDS=${BENCH_RATE_SECONDS:-3}
HS_SECONDS=${BENCH_HS_SECONDS:-3}
HS_WORKERS=${BENCH_HS_WORKERS:-32}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
# Every bench client comes from 127.0.0.1: the per-client and fd-derived
# limits (issue 17) would refuse the idle-connection and load phases.
BENCH_NO_LIMITS="--max-conns 0 --max-conns-per-client 0 --max-requests-per-client 0"
ROUTES=${BENCH_ROUTES:-10000}
NODES=${BENCH_NODES:-3}
NODE_STREAMS=${BENCH_NODE_STREAMS:-3}
NODE_ROUNDS=${BENCH_NODE_ROUNDS:-9}
# One backend process serves every node's port by default: the row judges
# nexmux's own cost of several nodes, and three backend processes on the
# same two cores moved it by more than its 5% margin from run to run.
NODE_PROCS=${BENCH_NODE_PROCS:-1}
ONLY=${BENCH_ONLY:-}
OUT=${BENCH_OUT:-$ROOT/docs/bench}
PORT_BASE=${BENCH_PORT_BASE:-19400}
HOST=registry.bench.test
REPO=bench

say() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

# nexmux reads NEXMUX_* as flags: none of the caller's may leak in.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^NEXMUX_' || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nexmux-bench.XXXXXX")
pids=()
HOSTS_TAG=nexmux-bench
# remove_hosts_lines drops the /etc/hosts lines tagged "# nexmux-bench",
# rewriting the file in place (not sed -i: /etc/hosts may be a bind mount).
remove_hosts_lines() {
	grep -q "# $HOSTS_TAG\$" /etc/hosts 2>/dev/null || return 0
	local kept
	kept=$(grep -v "# $HOSTS_TAG\$" /etc/hosts || true)
	printf '%s\n' "$kept" >/etc/hosts
}
# shellcheck disable=SC2317 # called by the traps
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#pids[@]})); then
		for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
		for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	fi
	remove_hosts_lines
	if [[ ${BENCH_KEEP:-} == 1 || $rc != 0 ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools -------------------------------------------------------------------
command -v go >/dev/null || die "go is not installed"
if ! command -v nginx >/dev/null; then
	[[ $(id -u) == 0 ]] || die "nginx is missing and only root can apt-get install it"
	say "installing nginx-light with apt"
	export DEBIAN_FRONTEND=noninteractive
	# Keep the package's own service from starting on :80: nothing but what
	# this script starts (and stops) may run.
	created_policy=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		created_policy=1
	fi
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends nginx-light >&2 || apt-get install -y -q --no-install-recommends nginx >&2
	[[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
fi
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //')
for tool in wrk:wrk ab:apache2-utils valgrind:valgrind; do
	command -v "${tool%%:*}" >/dev/null && continue
	[[ $(id -u) == 0 ]] || die "${tool%%:*} is missing and only root can apt-get install it"
	say "installing ${tool#*:} with apt"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${tool#*:}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${tool#*:}" >&2; }
done
WRK=$(command -v wrk)
AB=$(command -v ab)

# 10,000 idle connections need 10,000 descriptors in the client and in each
# server (plus upstream connections): raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((NOFILE < IDLE_CONNS + 500)); then
	if ulimit -Hn $((IDLE_CONNS + 1000)) 2>/dev/null; then
		ulimit -n $((IDLE_CONNS + 1000))
		NOFILE=$(ulimit -n)
	else
		die "RLIMIT_NOFILE is $NOFILE (hard limit); $IDLE_CONNS idle connections need $((IDLE_CONNS + 500)): lower BENCH_IDLE_CONNS or raise the limit"
	fi
fi
[[ $NOFILE == unlimited ]] && NOFILE=1048576
WORKER_CONNECTIONS=$((NOFILE - 100))

# --- build -------------------------------------------------------------------
say "building nexmux, benchtool and gencert into $WORK"
PROFILE=${BENCH_PROFILE:-}
if [[ -n $PROFILE ]]; then
	mkdir -p "$PROFILE"
	PROFILE=$(cd "$PROFILE" && pwd)
	printf '{"Replace": {"%s": "%s"}}\n' "$ROOT/cmd/nexmux/zz_bench_pprof.go" "$ROOT/scripts/benchtool/pprof_overlay.go.txt" >"$WORK/overlay.json"
	go build -overlay "$WORK/overlay.json" -o "$WORK/nexmux" ./cmd/nexmux
else
	go build -o "$WORK/nexmux" ./cmd/nexmux
fi
# benchtool is a module of its own (its chart dependencies stay out of nexmux).
(cd scripts/benchtool && go build -o "$WORK/benchtool" .)
go build -o "$WORK/gencert" ./fixtures/cmd/gencert
"$WORK/gencert" -dir "$WORK/certs" -hosts "*.$REPO.test,$REPO.test,localhost,127.0.0.1" >/dev/null
CERT=$WORK/certs/server.crt
KEY=$WORK/certs/server.key
CA=$WORK/certs/ca.crt

# nexmux's own work against the Go floor, in instructions of the proxy
# alone: a count the machine's load does not move (scripts/callgrind.sh).
count_instructions() {
	say "counting instructions per small request of the proxy alone (callgrind, ${BENCH_CALLGRIND_ROUNDS:-2} rounds)"
	bash "$ROOT/scripts/callgrind.sh" "${BENCH_CALLGRIND_ROUNDS:-2}" | tee "$WORK/callgrind.txt" >&2
	"$WORK/benchtool" instr -results "$WORK/results.json" <"$WORK/callgrind.txt"
}

# write_report puts WORK's results into OUT with their report. A partial
# run keeps the full run's figures, and its run time.
write_report() {
	local elapsed run_time full
	elapsed=$(($(date +%s) - START))
	run_time="$((elapsed / 60)) min $((elapsed % 60)) s"
	if [[ -n $ONLY && -f $OUT/results.md ]]; then
		full=$(sed -n 's/.*; the whole `make bench` \(.*\)\.$/\1/p' "$OUT/results.md" | head -n 1)
		say "partial run ($ONLY) took $run_time; merged into $OUT/results.json"
		run_time=$full
	fi
	mkdir -p "$OUT"
	cp "$WORK/results.json" "$OUT/results.json"
	"$WORK/benchtool" report -in "$OUT/results.json" -md "$OUT/results.md" -png "$OUT/results.png" \
		-readme "$OUT/README-section.md" -run-time "$run_time" -notes "$ROOT/docs/bench/small-requests.md"
	say "done in $run_time: $OUT/results.md, results.png, README-section.md"
}

# BENCH_ONLY=instr: the instruction counts alone, added to OUT's results
# (no server of the bench runs).
if [[ $ONLY == instr ]]; then
	[[ -f $OUT/results.json ]] || die "BENCH_ONLY=instr adds to $OUT/results.json, which is missing"
	cp "$OUT/results.json" "$WORK/results.json"
	count_instructions
	write_report
	exit 0
fi

# --- ports -------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
P_BACKEND=$((PORT_BASE + 1))
P_DIRECT=$((PORT_BASE + 2))
P_NEXMUX=$((PORT_BASE + 3))
P_METRICS=$((PORT_BASE + 4))
P_MANY=$((PORT_BASE + 5))
P_SONATYPE=$((PORT_BASE + 6))
P_TUNED=$((PORT_BASE + 7))
P_FLOOR=$((PORT_BASE + 8))
P_NODES=$((PORT_BASE + 9))
P_NODES_METRICS=$((PORT_BASE + 10))
P_PPROF_NEXMUX=$((PORT_BASE + 30))
P_PPROF_FLOOR=$((PORT_BASE + 31))
# The other nodes' backends: PORT_BASE+11 and on.
P_MORE_BACKENDS=()
for ((i = 1; i < NODES; i++)); do P_MORE_BACKENDS+=($((PORT_BASE + 10 + i))); done
for p in $P_BACKEND $P_DIRECT $P_NEXMUX $P_METRICS $P_MANY $P_SONATYPE $P_TUNED $P_FLOOR $P_NODES $P_NODES_METRICS "${P_MORE_BACKENDS[@]}"; do
	port_open "$p" && die "127.0.0.1:$p is in use (set BENCH_PORT_BASE)"
done

wait_port() {
	local port=$1 pid=$2 name=$3
	for _ in $(seq 200); do
		port_open "$port" && return 0
		kill -0 "$pid" 2>/dev/null || die "$name exited; see $WORK/$name.log"
		sleep 0.05
	done
	die "$name is not listening on $port; see $WORK/$name.log"
}

# --- servers -----------------------------------------------------------------
say "starting the backend (blob ${BLOB_MIB} MiB in page cache)"
# BENCH_NODE_PROCS=1: the first backend process also serves the other
# nodes' ports (a diagnosis: nexmux's cost of several nodes without the
# cost of several backend processes on the same cores).
listen=127.0.0.1:$P_BACKEND
if [[ $NODE_PROCS == 1 ]]; then
	for p in "${P_MORE_BACKENDS[@]}"; do listen+=",127.0.0.1:$p"; done
fi
"$WORK/benchtool" backend -listen "$listen" -tls-listen "127.0.0.1:$P_DIRECT" \
	-cert "$CERT" -key "$KEY" -blob-size $((BLOB_MIB << 20)) >"$WORK/backend.log" 2>&1 &
pids+=($!)
BACKEND_PID=$!
wait_port "$P_BACKEND" "$BACKEND_PID" backend
wait_port "$P_DIRECT" "$BACKEND_PID" backend
# The node-count row: NODES backends, each its own process and its own
# --upstream node (the first is the one above).
BACKEND_PIDS=$BACKEND_PID
NODE_UPSTREAMS=(--upstream "http://127.0.0.1:$P_BACKEND")
for p in "${P_MORE_BACKENDS[@]}"; do
	NODE_UPSTREAMS+=(--upstream "http://127.0.0.1:$p")
	if [[ $NODE_PROCS == 1 ]]; then
		wait_port "$p" "$BACKEND_PID" backend
		continue
	fi
	"$WORK/benchtool" backend -listen "127.0.0.1:$p" -blob-size $((BLOB_MIB << 20)) >"$WORK/backend-$p.log" 2>&1 &
	pids+=($!)
	bpid=$!
	wait_port "$p" "$bpid" "backend-$p"
	BACKEND_PIDS+=",$bpid"
done

say "starting nexmux (1 route), nexmux ($ROUTES routes from --config) and the Go floor"
BENCH_PPROF_LISTEN=${PROFILE:+127.0.0.1:$P_PPROF_NEXMUX} "$WORK/nexmux" serve --listen "127.0.0.1:$P_NEXMUX" --upstream "http://127.0.0.1:$P_BACKEND" \
	--cert "$CERT" --key "$KEY" --route "$HOST=$REPO" --metrics-listen "127.0.0.1:$P_METRICS" \
	$BENCH_NO_LIMITS >"$WORK/nexmux.log" 2>&1 &
pids+=($!)
NEXMUX_PID=$!
say "starting nexmux with $NODES --upstream nodes"
"$WORK/nexmux" serve --listen "127.0.0.1:$P_NODES" "${NODE_UPSTREAMS[@]}" \
	--cert "$CERT" --key "$KEY" --route "$HOST=$REPO" --metrics-listen "127.0.0.1:$P_NODES_METRICS" \
	$BENCH_NO_LIMITS >"$WORK/nexmux-nodes.log" 2>&1 &
pids+=($!)
NODES_PID=$!
NODES_STARTED=$(date +%s)
# The Go floor: crypto/tls + net/http + httputil.ReverseProxy and nothing
# else, the parts nexmux is built on.
"$WORK/benchtool" floor -listen "127.0.0.1:$P_FLOOR" -upstream "http://127.0.0.1:$P_BACKEND" \
	-prefix "/repository/$REPO" -cert "$CERT" -key "$KEY" ${PROFILE:+-pprof "127.0.0.1:$P_PPROF_FLOOR"} >"$WORK/floor.log" 2>&1 &
pids+=($!)
FLOOR_PID=$!
"$WORK/benchtool" routes -n "$ROUTES" -hostfmt "r%05d.$REPO.test" -repo "$REPO" \
	-set "listen=127.0.0.1:$P_MANY" -set "upstream=http://127.0.0.1:$P_BACKEND" \
	-set "cert=$CERT" -set "key=$KEY" -out "$WORK/routes.yaml"
"$WORK/nexmux" check --config "$WORK/routes.yaml" >/dev/null
"$WORK/nexmux" serve --config "$WORK/routes.yaml" $BENCH_NO_LIMITS >"$WORK/nexmux-many.log" 2>&1 &
pids+=($!)
MANY_PID=$!

# nginx_conf NAME: the parts both nginx configurations share; the
# location block comes from the caller on standard input.
nginx_conf() {
	local name=$1 dir=$WORK/$1 block
	block=$(cat)
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<-EOF
		# Generated by scripts/bench.sh.
		daemon off;
		worker_processes auto;
		worker_rlimit_nofile $NOFILE;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections $WORKER_CONNECTIONS; }
		http {
		    access_log $dir/access.log;
		    client_body_temp_path $dir/client_body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    ssl_protocols TLSv1.2 TLSv1.3;
		    ssl_certificate $CERT;
		    ssl_certificate_key $KEY;
		$block
		}
	EOF
	nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx -t refused $dir/nginx.conf"
}

# Sonatype's documented reverse-proxy settings; nginx defaults otherwise
# (HTTP/1.0 and a new connection per request to the backend).
nginx_conf nginx-sonatype <<EOF
    proxy_send_timeout 120;
    proxy_read_timeout 300;
    proxy_buffering off;
    proxy_request_buffering off;
    server {
        listen 127.0.0.1:$P_SONATYPE ssl;
        server_name $HOST;
        # Sonatype's example has 1G; unlimited costs nothing and lets
        # BENCH_BLOB_MIB grow.
        client_max_body_size 0;
        location /v2/ {
            proxy_pass http://127.0.0.1:$P_BACKEND/repository/$REPO/v2/;
            proxy_set_header Host \$host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
EOF

# Tuned: HTTP/1.1 with a pool of keep-alive connections to the backend,
# larger proxy buffers, never a temporary file, no request buffering.
nginx_conf nginx-tuned <<EOF
    upstream nexus {
        server 127.0.0.1:$P_BACKEND;
        keepalive 64;
        keepalive_requests 100000;
    }
    proxy_send_timeout 120;
    proxy_read_timeout 300;
    proxy_http_version 1.1;
    proxy_request_buffering off;
    proxy_buffering on;
    proxy_buffer_size 64k;
    proxy_buffers 32 64k;
    proxy_busy_buffers_size 256k;
    proxy_max_temp_file_size 0;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$P_TUNED ssl;
        server_name $HOST;
        client_max_body_size 0;
        location /v2/ {
            proxy_pass http://nexus/repository/$REPO/v2/;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
EOF

say "starting nginx ($NGINX_VERSION) twice: Sonatype's config and a tuned one"
for name in nginx-sonatype nginx-tuned; do
	nginx -p "$WORK/$name" -e "$WORK/$name/error.log" -c "$WORK/$name/nginx.conf" >"$WORK/$name.log" 2>&1 &
	pids+=($!)
	eval "${name//-/_}_pid=$!"
done
wait_port "$P_NEXMUX" "$NEXMUX_PID" nexmux
wait_port "$P_MANY" "$MANY_PID" nexmux-many
wait_port "$P_FLOOR" "$FLOOR_PID" floor
# shellcheck disable=SC2154 # set by the eval above
wait_port "$P_SONATYPE" "$nginx_sonatype_pid" nginx-sonatype
# shellcheck disable=SC2154
wait_port "$P_TUNED" "$nginx_tuned_pid" nginx-tuned
wait_port "$P_METRICS" "$NEXMUX_PID" nexmux
wait_port "$P_NODES" "$NODES_PID" nexmux-nodes
wait_port "$P_NODES_METRICS" "$NODES_PID" nexmux-nodes

# The node-count row means something only if nexmux counts every node
# healthy and writable after its probes (two agreeing rounds, 2 s apart):
# otherwise it would measure fail-open or one node.
left=$((NODES_STARTED + 6 - $(date +%s)))
((left > 0)) && sleep "$left"
table=$(curl -fsS "http://127.0.0.1:$P_NODES_METRICS/upstreams") || die "nexmux-nodes: no /upstreams; see $WORK/nexmux-nodes.log"
if [[ $(grep -c '"state": "writable"' <<<"$table") != "$NODES" ]] || grep -q '"lastError"' <<<"$table"; then
	die "nexmux-nodes does not count $NODES writable nodes: $table"
fi

# wrk resolves the URL's host and sends it as SNI: map it here for the run.
if ! getent hosts "$HOST" >/dev/null; then
	[[ -w /etc/hosts ]] || die "$HOST does not resolve and /etc/hosts is not writable (wrk needs the name for SNI)"
	printf '127.0.0.1 %s # %s\n' "$HOST" "$HOSTS_TAG" >>/etc/hosts
fi
[[ $(getent hosts "$HOST" | awk '{print $1}') == 127.0.0.1 ]] || die "$HOST resolves to $(getent hosts "$HOST"), not 127.0.0.1"

# --- measure -----------------------------------------------------------------
say "measuring (a few minutes; progress below)"
merge=()
# A partial run replaces only its own rows of the last full run.
[[ -n $ONLY && -f $OUT/results.json ]] && merge=(-merge "$OUT/results.json")
# The previous run, for the "vs previous run" column: the committed
# results (the working copy's when git has none).
git -C "$ROOT" show "HEAD:docs/bench/results.json" >"$WORK/previous.json" 2>/dev/null ||
	cp "$OUT/results.json" "$WORK/previous.json" 2>/dev/null || rm -f "$WORK/previous.json"
previous=()
[[ -s $WORK/previous.json ]] && previous=(-previous "$WORK/previous.json")
"$WORK/benchtool" run -out "$WORK/results.json" -ca "$CA" -nginx-version "$NGINX_VERSION" -backend-pid "$BACKEND_PIDS" \
	-blob-size $((BLOB_MIB << 20)) -reps "$REPS" -rounds "$ROUNDS" \
	-rate-seconds "$RATE_SECONDS" -hs-seconds "$HS_SECONDS" -hs-workers "$HS_WORKERS" -idle-conns "$IDLE_CONNS" \
	-wrk "$WRK" -ab "$AB" -small-rounds "$SMALL_ROUNDS" -small-seconds "$SMALL_SECONDS" -small-conns "$SMALL_CONNS" \
	${ONLY:+-only "$ONLY"} "${merge[@]}" "${previous[@]}" -nodes-streams "$NODE_STREAMS" -nodes-rounds "$NODE_ROUNDS" -nodes-procs "$NODE_PROCS" \
	-target "direct,addr=127.0.0.1:$P_DIRECT,host=$HOST,prefix=/repository/$REPO" \
	-target "nexmux,addr=127.0.0.1:$P_NEXMUX,host=$HOST,pid=$NEXMUX_PID,metrics=http://127.0.0.1:$P_METRICS/metrics${PROFILE:+,pprof=http://127.0.0.1:$P_PPROF_NEXMUX}" \
	-target "floor,addr=127.0.0.1:$P_FLOOR,host=$HOST,pid=$FLOOR_PID${PROFILE:+,pprof=http://127.0.0.1:$P_PPROF_FLOOR}" \
	${PROFILE:+-profile "$PROFILE"} \
	-target "nginx-sonatype,addr=127.0.0.1:$P_SONATYPE,host=$HOST,pid=$nginx_sonatype_pid,tree" \
	-target "nginx-tuned,addr=127.0.0.1:$P_TUNED,host=$HOST,pid=$nginx_tuned_pid,tree" \
	-routes-target "nexmux-$ROUTES-routes,addr=127.0.0.1:$P_MANY,pid=$MANY_PID,host=r00000.$REPO.test,hosts=$ROUTES,hostfmt=r%05d.$REPO.test" \
	-nodes-target "nexmux-$NODES-nodes,addr=127.0.0.1:$P_NODES,pid=$NODES_PID,host=$HOST,nodes=$NODES"

for p in "${pids[@]}"; do
	kill -0 "$p" 2>/dev/null || die "a server exited during the run; see the logs in $WORK"
done
if [[ -z $PROFILE && ${BENCH_CALLGRIND_ROUNDS:-2} != 0 && ( -z $ONLY || ,$ONLY, == *,small,* ) ]]; then
	count_instructions
fi
write_report
