#!/usr/bin/env bash
# make demo: nexmux in front of the Nexus fixture, for trying docker by hand.
#
# Builds the binaries, writes a test CA and a server certificate into .demo/,
# starts the fixture on 127.0.0.1:8081 and nexmux on :8443 (plus legacy
# connector ports 18082/18083 bound by nexmux itself), checks that a registry
# answers through nexmux, prints the commands to try, and runs until Ctrl-C.
# Needs only Go and make; uses curl for the self-check when it is installed.
# Override with DEMO_DIR, DEMO_LISTEN_PORT, DEMO_NEXUS_PORT,
# DEMO_LEGACY_PULL_PORT, DEMO_LEGACY_PUSH_PORT if a port is taken (not
# NEXMUX_*: nexmux reads those from the environment as flags).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO_DIR=${DEMO_DIR:-$ROOT/.demo}
NEXMUX_PORT=${DEMO_LISTEN_PORT:-8443}
NEXUS_PORT=${DEMO_NEXUS_PORT:-8081}
LEGACY_PULL_PORT=${DEMO_LEGACY_PULL_PORT:-18082}
LEGACY_PUSH_PORT=${DEMO_LEGACY_PUSH_PORT:-18083}
# Root (as in a fresh container or CI) has no sudo on a stock Debian.
SUDO="sudo "
if [ "$(id -u)" = 0 ]; then SUDO=""; fi
HOSTS=(team-a.nexmux.test team-a-push.nexmux.test team-b.nexmux.test team-b-push.nexmux.test)
# shellcheck source=scripts/e2e-mirror.sh
source "$ROOT/scripts/e2e-mirror.sh" # the mirror name (HOSTS+=) and its client files

say() { printf '%s demo: %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

pids=()
# shellcheck disable=SC2317 # called by the traps
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#pids[@]})); then
		say "stopping nexmux and the fixture"
		for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
		for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT # Ctrl-C is the way to stop the demo
trap 'exit 143' TERM

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v go >/dev/null || die "go is not installed"
for v in DEMO_NEXUS_PORT=$NEXUS_PORT DEMO_LISTEN_PORT=$NEXMUX_PORT DEMO_LEGACY_PULL_PORT=$LEGACY_PULL_PORT DEMO_LEGACY_PUSH_PORT=$LEGACY_PUSH_PORT; do
	port_open "${v#*=}" && die "port ${v#*=} is already in use (stop what listens there, or set ${v%%=*})"
done

say "building"
${MAKE:-make} --no-print-directory build

mkdir -p "$DEMO_DIR"
./bin/gencert -dir "$DEMO_DIR" -hosts "*.nexmux.test,nexmux.test,localhost,127.0.0.1,::1"

# shellcheck disable=SC2054 # the commas are part of a --route value
args=(--listen ":$NEXMUX_PORT" --upstream "http://127.0.0.1:$NEXUS_PORT"
	--cert "$DEMO_DIR/server.crt" --key "$DEMO_DIR/server.key"
	--route team-a.nexmux.test=pull:team-a,push:team-a-hosted
	--route team-a-push.nexmux.test=team-a-hosted
	--route team-b.nexmux.test=team-b
	--route team-b-push.nexmux.test=team-b-hosted
	--port "$LEGACY_PULL_PORT=team-a" --port "$LEGACY_PUSH_PORT=team-a-hosted"
	--bind-ports)
mirror_args "$DEMO_DIR" admin:admin123 && args+=("${MIRROR_ARGS[@]}")
mirror_client_files "$DEMO_DIR" "$DEMO_DIR/ca.crt"
./bin/nexmux check "${args[@]}" >"$DEMO_DIR/check.out" 2>&1 ||
	{ cat "$DEMO_DIR/check.out" >&2; die "nexmux check refused the demo configuration"; }
cat "$DEMO_DIR/check.out"

say "starting the Nexus fixture on 127.0.0.1:$NEXUS_PORT (log: $DEMO_DIR/fixture.log)"
./bin/nexus-fixture -listen "127.0.0.1:$NEXUS_PORT" -user admin:admin123 -proxy-repos >"$DEMO_DIR/fixture.log" 2>&1 &
pids+=($!)
say "starting nexmux on :$NEXMUX_PORT (log: $DEMO_DIR/nexmux.log)"
./bin/nexmux serve "${args[@]}" >"$DEMO_DIR/nexmux.log" 2>&1 &
pids+=($!)

for i in $(seq 1 100); do
	port_open "$NEXUS_PORT" && port_open "$NEXMUX_PORT" && break
	for p in "${pids[@]}"; do
		kill -0 "$p" 2>/dev/null || {
			tail -n 20 "$DEMO_DIR/fixture.log" "$DEMO_DIR/nexmux.log" >&2
			die "a process exited during start-up"
		}
	done
	((i == 100)) && { tail -n 20 "$DEMO_DIR/fixture.log" "$DEMO_DIR/nexmux.log" >&2; die "not answering after 20s"; }
	sleep 0.2
done
say "both are up"

if command -v curl >/dev/null; then
	hdrs=$(curl -sS -o /dev/null -D - --max-time 10 --cacert "$DEMO_DIR/ca.crt" \
		--resolve "team-a.nexmux.test:$NEXMUX_PORT:127.0.0.1" \
		"https://team-a.nexmux.test:$NEXMUX_PORT/v2/" | tr -d '\r') || true
	status=$(printf '%s\n' "$hdrs" | awk 'NR==1{print $2}')
	realm=$(printf '%s\n' "$hdrs" | grep -i '^www-authenticate:' | sed -n 's/.*realm="\([^"]*\)".*/\1/Ip')
	if [[ $status == 401 && -n $realm ]]; then
		say "self-check OK: GET https://team-a.nexmux.test:$NEXMUX_PORT/v2/ -> 401, realm $realm"
	else
		printf '%s\n' "$hdrs" >&2
		say "WARNING: self-check failed: want 401 with a realm, got status '${status:-none}' (see $DEMO_DIR/nexmux.log)"
	fi
else
	say "curl is not installed: self-check skipped"
fi

port=$NEXMUX_PORT
cat <<EOF

================================================================================
nexmux demo is running. Nexus fixture user: admin / admin123.

Routes:
  team-a.nexmux.test:$port       pull from group team-a, push to team-a-hosted
  team-a-push.nexmux.test:$port  team-a-hosted (push here)
  team-b.nexmux.test:$port       group team-b
  team-b-push.nexmux.test:$port  team-b-hosted
  localhost:$LEGACY_PULL_PORT               team-a        (legacy connector port)
  localhost:$LEGACY_PUSH_PORT               team-a-hosted (legacy connector port)

1. Name resolution: add this line to /etc/hosts (as root):

   127.0.0.1 ${HOSTS[*]}

2. Trust the test CA ($DEMO_DIR/ca.crt).
   docker (no restart needed; one directory per host:port):

$(for h in "${HOSTS[@]}"; do printf '   %smkdir -p /etc/docker/certs.d/%s:%s && %scp %s /etc/docker/certs.d/%s:%s/ca.crt\n' "$SUDO" "$h" "$port" "$SUDO" "$DEMO_DIR/ca.crt" "$h" "$port"; done)

   curl:  curl --cacert $DEMO_DIR/ca.crt https://team-a.nexmux.test:$port/v2/
   (without the hosts line: add --resolve team-a.nexmux.test:$port:127.0.0.1)

3. Log in, push, pull:

   docker login team-a.nexmux.test:$port -u admin -p admin123
   docker login team-a-push.nexmux.test:$port -u admin -p admin123
   docker tag SOME-LOCAL-IMAGE team-a-push.nexmux.test:$port/demo/app:1
   docker push team-a-push.nexmux.test:$port/demo/app:1
   docker rmi team-a-push.nexmux.test:$port/demo/app:1
   docker pull team-a.nexmux.test:$port/demo/app:1

   No image at hand and no internet? Make one:
   mkdir -p /tmp/img/data && head -c 2M /dev/urandom >/tmp/img/data/random.bin &&
     tar -C /tmp/img -c . | docker import - team-a-push.nexmux.test:$port/demo/app:1

   Legacy connector ports (docker treats 127.0.0.0/8 and localhost as
   insecure registries, so no certs.d entry is needed there):
   docker login localhost:$LEGACY_PUSH_PORT -u admin -p admin123
   docker tag team-a-push.nexmux.test:$port/demo/app:1 localhost:$LEGACY_PUSH_PORT/demo/app:1
   docker push localhost:$LEGACY_PUSH_PORT/demo/app:1

Registry mirror $MIRROR_HOST:$port (docker.io, ghcr.io, quay.io, registry.k8s.io
from the fixture's proxy repositories; no login needed: --mirror-auth-file).
Client files from the README: $DEMO_DIR/certs.d, $DEMO_DIR/registries.conf.
ctr talks to a running containerd (/run/containerd/containerd.sock); with only
dockerd running, add --address /run/docker/containerd/containerd.sock after ctr.
   ${SUDO}ctr images pull --hosts-dir $DEMO_DIR/certs.d quay.io/acme/tool:2
   ${SUDO}ctr images pull --hosts-dir $DEMO_DIR/certs.d ghcr.io/acme/app:1
   skopeo --registries-conf $DEMO_DIR/registries.conf inspect --no-tags \\
     --cert-dir $DEMO_DIR/mirror-ca docker://ghcr.io/acme/app:1

Self-check by hand (expects 401 and a WWW-Authenticate realm):
   curl -si --cacert $DEMO_DIR/ca.crt --resolve team-a.nexmux.test:$port:127.0.0.1 https://team-a.nexmux.test:$port/v2/

Logs: $DEMO_DIR/nexmux.log  $DEMO_DIR/fixture.log
Press Ctrl-C to stop both.
================================================================================
EOF

# Run until Ctrl-C, or until one of the two exits.
set +e
wait -n "${pids[@]}"
rc=$?
set -e
say "a process exited (status $rc); last log lines:"
tail -n 20 "$DEMO_DIR/fixture.log" "$DEMO_DIR/nexmux.log" >&2
exit 1
