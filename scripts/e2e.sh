#!/usr/bin/env bash
# make e2e: real docker and skopeo clients through nexmux to the Nexus fixture.
#
# Runs as root on Debian 12 (CI runs it after `make test`). It installs
# docker.io, skopeo and iptables when missing, starts a private dockerd
# (own socket, data root, exec root, containerd namespace and config: an
# already running dockerd is not touched), the Nexus fixture on
# 127.0.0.1:8081 and nexmux on 127.0.0.1:8443, and then pushes, pulls and
# copies images by SNI name and by legacy connector port (iptables REDIRECT
# to the fan-in listener, SO_ORIGINAL_DST in nexmux). The REDIRECT rules come
# from `nexmux iptables --chain NEXMUX-E2E`, built from this tree like the
# rest, and `--delete` must remove them exactly.
#
# System changes, all undone on exit (also on failure and Ctrl-C):
#   /etc/hosts lines ending in "# nexmux-e2e";
#   /etc/docker/certs.d/<host:port>/ entries (only those it created);
#   the nat chain NEXMUX-E2E and its jumps.
# No image is pulled from the internet: test images come from `docker import`
# of random data.
#
# Note: dockerd treats every registry whose name resolves into 127.0.0.0/8 as
# "insecure" (it still speaks TLS, with the SNI, but skips verification), so
# certificate verification is asserted with curl and skopeo, which do verify.
#
# Output: one PASS/FAIL line per step, then "N passed, M failed" as the last
# line; exit status 0 only when nothing failed. Logs (per step, nexmux,
# fixture, dockerd) are kept in /tmp/nexmux-e2e-logs on failure, or always in
# $E2E_LOG_DIR when it is set. E2E_NEXUS_PORT and E2E_LISTEN_PORT move the
# fixture and the fan-in listener off 8081 and 8443. A Nexus variant:
# E2E_NEXUS_CONTEXT=/nexus serves the fixture under that context path (and
# nexmux's --upstream with it), E2E_FIXTURE_ARGS adds nexus-fixture flags,
# e.g. "-location-style absolute -null-scheme".
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
# (Not NEXMUX_*: nexmux reads those from the environment as flags.)
NEXUS_PORT=${E2E_NEXUS_PORT:-8081}
NEXMUX_PORT=${E2E_LISTEN_PORT:-8443}
METRICS_PORT=${E2E_METRICS_PORT:-18090}
NEXUS_CTX=${E2E_NEXUS_CONTEXT:-}
read -r -a FIXTURE_VARIANT <<<"${E2E_FIXTURE_ARGS:-}"
LEGACY_PULL=18082 # --port 18082=team-a (group)
LEGACY_PUSH=18083 # --port 18083=team-a-hosted
LEGACY_ONE=18084  # --port 18084=pull:team-a,push:team-a-hosted (one name per team)
TAG=nexmux-e2e
USER_PASS=admin:admin123
HOSTS=(team-a.nexmux.test team-a-push.nexmux.test team-b.nexmux.test team-b-push.nexmux.test nexus.nexmux.test)
# shellcheck source=scripts/e2e-mirror.sh
source "$ROOT/scripts/e2e-mirror.sh"

# The script's own stdout/stderr: a trap that fires while a step's output
# goes to its log file must still print the summary to the console.
exec 8>&1 9>&2
T0=$SECONDS
PASSED=0
FAILED=0
FAILED_NAMES=()
STEP=0
ts() { date +%H:%M:%S; }
# shellcheck source=scripts/e2e-ha.sh
source "$ROOT/scripts/e2e-ha.sh"
log() { printf '[%s] %s\n' "$(ts)" "$*"; }

# ---------------------------------------------------------------- cleanup --

WORK=""
FIXTURE_PID="" NEXMUX_PID="" DOCKERD_PID=""
CERTS_D_CREATED=() # files and dirs under /etc/docker/certs.d, in creation order
IPT_RESTORE_FILE="" # rules rendered by `nexmux iptables`, once loaded
IPT_CHAIN=NEXMUX-E2E # the chain asked of `nexmux iptables --chain`

# remove_hosts_lines drops every /etc/hosts line tagged "# nexmux-e2e".
# It rewrites the file in place (not sed -i: /etc/hosts may be a bind mount).
remove_hosts_lines() {
	grep -q "# $TAG\$" /etc/hosts 2>/dev/null || return 0
	local tmp
	tmp=$(mktemp)
	grep -v "# $TAG\$" /etc/hosts >"$tmp" || true
	cat "$tmp" >/etc/hosts
	rm -f "$tmp"
}

# remove_iptables_rules deletes the rules of the `nexmux iptables` ruleset
# we loaded.
remove_iptables_rules() {
	command -v iptables >/dev/null || return 0
	local line
	if [[ -n $IPT_RESTORE_FILE && -f $IPT_RESTORE_FILE ]]; then
		# Undo what the file added: its -A rules, then the chains it declared
		# (:C) or created (-N C, as the rules with their jumps do).
		local table=nat chains=() c
		while read -r line; do
			case $line in
			\**) table=${line#\*} ;;
			:* | -N\ *)
				c=${line#:}
				c=${c#-N }
				c=${c%% *}
				case $c in PREROUTING | INPUT | OUTPUT | POSTROUTING | FORWARD) ;; *) chains+=("$c") ;; esac
				;;
			-A\ *)
				# shellcheck disable=SC2086 # the rule is a list of words
				iptables -t "$table" -D ${line#-A } 2>/dev/null || true
				;;
			esac
		done <"$IPT_RESTORE_FILE"
		for c in "${chains[@]}"; do remove_chain "$c"; done
	fi
	remove_chain "$IPT_CHAIN"
}

# remove_chain CHAIN: delete every nat rule jumping to CHAIN, then CHAIN.
remove_chain() {
	iptables -t nat -S "$1" >/dev/null 2>&1 || return 0
	local line
	{ iptables -t nat -S 2>/dev/null || true; } | { grep -- "-j $1\( \|\$\)" || true; } |
		sed 's/^-A /-D /' | while read -r line; do
			# shellcheck disable=SC2086
			iptables -t nat $line 2>/dev/null || true
		done
	iptables -t nat -F "$1" 2>/dev/null || true
	iptables -t nat -X "$1" 2>/dev/null || true
}

stop_pid() { # stop_pid PID NAME [SECONDS]
	local pid=$1 name=$2 secs=${3:-20} i
	[[ -n $pid ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) did not stop in ${secs}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

show_logs() {
	local f
	for f in nexmux.log fixture.log dockerd.log; do
		[[ -f $WORK/logs/$f ]] || continue
		echo "---- last lines of $f ----"
		tail -n 40 "$WORK/logs/$f" | sed 's/^/    | /'
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	exec 1>&8 2>&9
	echo
	log "cleanup"
	# Logs are kept on failure, or always when E2E_LOG_DIR is set.
	if [[ -n $WORK && -d $WORK/logs ]] && ((FAILED > 0 || rc != 0)) || [[ -n ${E2E_LOG_DIR:-} ]]; then
		((FAILED > 0 || rc != 0)) && show_logs
		local keep=${E2E_LOG_DIR:-/tmp/nexmux-e2e-logs}
		rm -rf "$keep" && cp -r "$WORK/logs" "$keep" && log "logs kept in $keep"
	fi
	stop_pid "$DOCKERD_PID" dockerd 30
	# dockerd stops the containerd it started; make sure of it.
	if [[ -n $WORK && -f $WORK/docker-exec/containerd/containerd.pid ]]; then
		stop_pid "$(cat "$WORK/docker-exec/containerd/containerd.pid")" containerd 10
	fi
	ha_cleanup
	stop_pid "$NEXMUX_PID" nexmux 10
	stop_pid "$FIXTURE_PID" nexus-fixture 10
	remove_iptables_rules
	remove_hosts_lines
	local i p
	for ((i = ${#CERTS_D_CREATED[@]} - 1; i >= 0; i--)); do
		p=${CERTS_D_CREATED[i]}
		if [[ -d $p ]]; then rmdir "$p" 2>/dev/null; else rm -f "$p"; fi
	done
	[[ -n $WORK ]] && rm -rf "$WORK"
	if ((rc != 0 && FAILED == 0)); then
		FAILED=$((FAILED + 1)) # aborted before any step could fail (Ctrl-C, error)
		FAILED_NAMES+=("aborted (status $rc)")
	fi
	echo
	log "total time $((SECONDS - T0))s"
	if ((FAILED > 0)); then
		log "failed steps:"
		printf '  - %s\n' "${FAILED_NAMES[@]}"
	fi
	echo "$PASSED passed, $FAILED failed"
	if ((FAILED > 0)); then exit 1; fi
	exit 0
}
trap cleanup EXIT
trap 'log "interrupted" >&8; exit 130' INT
trap 'log "terminated" >&8; exit 143' TERM

# ------------------------------------------------------------------ steps --

# step NAME CMD...: run CMD with its output in a log file; PASS if it
# succeeds. Returns the result so callers can skip what depends on it.
step() {
	local name=$1
	shift
	STEP=$((STEP + 1))
	local logf
	logf=$WORK/logs/step-$(printf %02d "$STEP").log
	local t=$SECONDS
	log "---- step $STEP: $name"
	printf '     $ %s\n' "$*"
	local rc=0
	"$@" >"$logf" 2>&1 || rc=$?
	if ((rc == 0)); then
		PASSED=$((PASSED + 1))
		log "PASS: $name ($((SECONDS - t))s)"
		return 0
	fi
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$name")
	tail -n 40 "$logf" | sed 's/^/     | /'
	log "FAIL: $name (status $rc, $((SECONDS - t))s)"
	return 1
}
# skip NAME WHY: a step that cannot run because an earlier one failed.
skip() {
	STEP=$((STEP + 1))
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1 (not run: $2)")
	log "---- step $STEP: $1"
	log "FAIL: $1 (not run: $2)"
}
# abort: a set-up step failed; nothing after it can work.
abort() {
	log "set-up failed, stopping here"
	exit 1
}

# ------------------------------------------------------------ helpers ------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # wait_port PORT PID NAME
	local i
	for ((i = 0; i < 150; i++)); do
		port_open "$1" && return 0
		kill -0 "$2" 2>/dev/null || {
			echo "$3 exited"
			return 1
		}
		sleep 0.2
	done
	echo "$3 does not accept connections on 127.0.0.1:$1 after 30s"
	return 1
}

install_packages() {
	local need=()
	command -v dockerd >/dev/null || need+=(docker.io)
	command -v skopeo >/dev/null || need+=(skopeo)
	command -v iptables >/dev/null || need+=(iptables)
	command -v curl >/dev/null || need+=(curl ca-certificates)
	if ((${#need[@]} == 0)); then
		echo "dockerd, skopeo, iptables and curl are installed"
		return 0
	fi
	echo "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${need[@]}"
}

build() {
	go build -o bin/nexmux ./cmd/nexmux &&
		go build -o bin/nexus-fixture ./fixtures/cmd/nexus-fixture &&
		go build -o bin/gencert ./fixtures/cmd/gencert
}

# shellcheck source=scripts/e2e-onename.sh
source "$ROOT/scripts/e2e-onename.sh" # one name per team, issue 18: onename_steps
# shellcheck source=scripts/e2e-fixture.sh
source "$ROOT/scripts/e2e-fixture.sh" # probe_fixture, force_basic

start_fixture() {
	./bin/nexus-fixture -listen "127.0.0.1:$NEXUS_PORT" -user "$USER_PASS" "${ONENAME_FIXTURE_ARGS[@]}" \
		-context "$NEXUS_CTX" "${FIXTURE_VARIANT[@]}" \
		-data "$WORK/nexus-data" >"$WORK/logs/fixture.log" 2>&1 8>&- 9>&- &
	FIXTURE_PID=$!
	wait_port "$NEXUS_PORT" "$FIXTURE_PID" nexus-fixture &&
		probe_fixture "http://127.0.0.1:$NEXUS_PORT$NEXUS_CTX" # for force_basic
}

start_nexmux() {
	./bin/nexmux serve "${NEXMUX_ARGS[@]}" >"$WORK/logs/nexmux.log" 2>&1 8>&- 9>&- &
	NEXMUX_PID=$!
	wait_port "$NEXMUX_PORT" "$NEXMUX_PID" nexmux
}

add_hosts() {
	local h
	for h in "${HOSTS[@]}"; do
		if grep -v "# $TAG\$" /etc/hosts | grep -Eq "[[:space:]]$h([[:space:]]|\$)"; then
			echo "warning: /etc/hosts already maps $h:"
			grep -E "[[:space:]]$h([[:space:]]|\$)" /etc/hosts
		fi
		printf '127.0.0.1 %s # %s\n' "$h" "$TAG" >>/etc/hosts
	done
	grep "# $TAG\$" /etc/hosts
}

# trust_ca HOST:PORT: the test CA for dockerd (/etc/docker/certs.d). A
# directory that already exists gets a separate nexmux-e2e.crt beside what is
# there (dockerd reads every *.crt in it as a CA).
trust_ca() {
	local d=/etc/docker/certs.d/$1 f p
	for p in /etc/docker /etc/docker/certs.d "$d"; do
		if [[ ! -d $p ]]; then
			mkdir "$p" || return 1
			CERTS_D_CREATED+=("$p")
		fi
	done
	f=$d/ca.crt
	[[ -e $f ]] && f=$d/$TAG.crt
	cp "$WORK/certs/ca.crt" "$f" || return 1
	CERTS_D_CREATED+=("$f")
	echo "$f"
}

trust_all() {
	local hp
	for hp in "$@"; do trust_ca "$hp" || return 1; done
}

# Legacy connector ports: locally generated connections to 127.0.0.1:18082
# and :18083 must reach the fan-in listener, where nexmux reads
# SO_ORIGINAL_DST. REDIRECT in the nat OUTPUT chain needs no route_localnet
# for loopback destinations.

# nexmux_iptables: the rules `nexmux iptables` renders, through
# iptables-restore --noflush.
nexmux_iptables() {
	local args=(--chain "$IPT_CHAIN")
	iptables -t nat -S >"$WORK/nat.before"
	IPT_RESTORE_FILE=$WORK/iptables.rules
	echo "\$ nexmux iptables ${args[*]} ${NEXMUX_ARGS[*]}"
	./bin/nexmux iptables "${args[@]}" "${NEXMUX_ARGS[@]}" >"$IPT_RESTORE_FILE" || return 1
	cat "$IPT_RESTORE_FILE"
	iptables-restore --noflush <"$IPT_RESTORE_FILE" || return 1
	iptables -t nat -S
	redirect_works
}

# nexmux_iptables_delete: `nexmux iptables --delete` must take away exactly
# what the apply rules added.
nexmux_iptables_delete() {
	local args=(--delete --chain "$IPT_CHAIN")
	echo "\$ nexmux iptables ${args[*]} ${NEXMUX_ARGS[*]}"
	./bin/nexmux iptables "${args[@]}" "${NEXMUX_ARGS[@]}" >"$WORK/iptables.delete" || return 1
	cat "$WORK/iptables.delete"
	iptables-restore --noflush <"$WORK/iptables.delete" || return 1
	iptables -t nat -S >"$WORK/nat.after"
	if ! diff -u "$WORK/nat.before" "$WORK/nat.after"; then
		echo "the nat table differs from before the apply"
		return 1
	fi
	local p
	for p in "$LEGACY_PULL" "$LEGACY_PUSH"; do
		if port_open "$p"; then
			echo "127.0.0.1:$p still accepts connections"
			return 1
		fi
	done
	echo "nat table as before; 127.0.0.1:$LEGACY_PULL and :$LEGACY_PUSH no longer redirected"
}

redirect_works() {
	local p
	for p in "$LEGACY_PULL" "$LEGACY_PUSH" "$LEGACY_ONE"; do
		port_open "$p" || {
			echo "127.0.0.1:$p does not reach nexmux"
			return 1
		}
	done
	echo "127.0.0.1:$LEGACY_PULL, :$LEGACY_PUSH and :$LEGACY_ONE reach nexmux"
}

start_dockerd() {
	mkdir -p "$WORK/docker-etc" "$DOCKER_CONFIG"
	# deprecated-key-path keeps dockerd 20.10..22 from writing
	# /etc/docker/key.json; later versions have no trust key and refuse the key.
	local major
	major=$(dockerd --version | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
	if [[ -n $major ]] && ((major <= 22)); then
		printf '{\n  "deprecated-key-path": "%s"\n}\n' "$WORK/docker-etc/key.json" >"$WORK/docker-etc/daemon.json"
	else
		echo '{}' >"$WORK/docker-etc/daemon.json"
	fi
	mirror_daemon_json "$WORK/docker-etc/daemon.json" || return 1
	echo '{}' >"$DOCKER_CONFIG/config.json"
	local args=(--host "$DOCKER_HOST" --data-root "$WORK/docker-data" --exec-root "$WORK/docker-exec"
		--pidfile "$WORK/docker.pid" --config-file "$WORK/docker-etc/daemon.json"
		--storage-driver vfs --bridge=none --iptables=false --ip6tables=false
		--ip-forward=false --ip-masq=false
		--containerd-namespace "$TAG" --containerd-plugins-namespace "$TAG-plugins")
	# Use only the optional flags this dockerd knows (--ip6tables is newer
	# than some versions; --ip-forward/--ip-masq may go away).
	local help a keep=()
	help=$(dockerd --help 2>&1)
	for a in "${args[@]}"; do
		case $a in
		--ip6tables=* | --ip-forward=* | --ip-masq=*)
			if ! grep -q -- "${a%%=*} " <<<"$help"; then
				echo "dockerd does not know ${a%%=*}; leaving it out"
				continue
			fi
			;;
		esac
		keep+=("$a")
	done
	echo "dockerd ${keep[*]}"
	dockerd "${keep[@]}" >"$WORK/logs/dockerd.log" 2>&1 8>&- 9>&- </dev/null &
	DOCKERD_PID=$!
	local i
	for ((i = 0; i < 120; i++)); do
		docker version >/dev/null 2>&1 && break
		kill -0 "$DOCKERD_PID" 2>/dev/null || {
			echo "dockerd exited"
			tail -n 30 "$WORK/logs/dockerd.log"
			return 1
		}
		sleep 0.5
	done
	docker version
}

# make_image REF MB: an image from random data, without pulling anything.
make_image() {
	local dir=$WORK/img-${1//[^a-zA-Z0-9]/_}
	mkdir -p "$dir/data" &&
		head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$dir/data/random.bin" &&
		echo "$1" >"$dir/data/name" &&
		tar -C "$dir" -cf - . | docker import -m "nexmux e2e $1" - "$1" >&2 &&
		docker image inspect -f '{{.Id}}' "$1"
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null; }

docker_login() { docker login "$1" -u "${USER_PASS%%:*}" -p "${USER_PASS#*:}"; }

# push REF: docker push, and record the manifest digest it reports.
push() {
	local out
	out=$(docker push "$1" 2>&1)
	local rc=$?
	echo "$out"
	((rc == 0)) || return "$rc"
	local d
	d=$(grep -o 'digest: sha256:[0-9a-f]\{64\}' <<<"$out" | tail -n 1 | cut -d' ' -f2)
	[[ -n $d ]] || {
		echo "no digest in docker push output"
		return 1
	}
	echo "$d" >"$WORK/digest-${1//[^a-zA-Z0-9]/_}"
	echo "pushed $1 as $d"
}
pushed_digest() { cat "$WORK/digest-${1//[^a-zA-Z0-9]/_}" 2>/dev/null; }

# remove_image ID: delete every tag of the image so a pull must fetch it all.
remove_image() {
	docker rmi -f "$1" || return 1
	if docker image inspect "$1" >/dev/null 2>&1; then
		echo "image $1 is still present"
		return 1
	fi
	echo "image $1 removed"
}

# pull_same REF WANT_ID [WANT_DIGEST]: docker pull REF; its image ID must be
# WANT_ID and its repo digest WANT_DIGEST.
pull_same() {
	docker pull "$1" || return 1
	local id
	id=$(image_id "$1")
	echo "pulled image id: $id"
	echo "pushed image id: $2"
	[[ $id == "$2" ]] || {
		echo "image IDs differ"
		return 1
	}
	if [[ -n ${3:-} ]]; then
		local rd
		rd=$(docker image inspect -f '{{join .RepoDigests " "}}' "$1")
		echo "repo digests: $rd"
		[[ " $rd " == *"@$3 "* ]] || {
			echo "no repo digest @$3"
			return 1
		}
	fi
}

# pull_refused REF: docker pull must fail because the image is not there (a
# failure for any other reason, e.g. auth or TLS, proves nothing).
pull_refused() {
	local out rc=0
	out=$(docker pull "$1" 2>&1) || rc=$?
	echo "$out"
	if ((rc == 0)); then
		echo "FAIL: the pull succeeded"
		return 1
	fi
	if grep -Eqi 'not found|manifest unknown|name unknown|MANIFEST_UNKNOWN|NAME_UNKNOWN' <<<"$out"; then
		echo "refused as expected"
		return 0
	fi
	echo "the pull failed, but not with 'not found' (auth? TLS?): the check proves nothing"
	return 1
}

SKOPEO_COMMON=()
skopeo_inspect_digest() { # REF: prints the manifest digest
	skopeo "${SKOPEO_COMMON[@]}" inspect --creds "$USER_PASS" --cert-dir "$WORK/skopeo-certs" \
		--format '{{.Digest}}' "docker://$1"
}
expect_digest() { # REF WANT
	local d
	d=$(skopeo_inspect_digest "$1") || return 1
	echo "skopeo inspect docker://$1: $d"
	echo "expected: $2"
	[[ -n $d && $d == "$2" ]]
}

# idle_releases prints nexmux_idle_releases_total.
idle_releases() {
	curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk '$1 == "nexmux_idle_releases_total" { print $2 }'
}

# curl_keepalive HOST:PORT: three requests on one HTTP/1.1 keep-alive
# connection, 1.5 s apart (curl --rate), each past --idle-release-after's
# default 1 s: each later one arrives on a connection nexmux released, and
# is answered on it. docker and skopeo disable keep-alive and ctr speaks
# HTTP/2, so curl is the e2e's keep-alive HTTP/1.1 client.
curl_keepalive() {
	local before after out
	before=$(idle_releases) || return 1
	out=$(curl -sS --http1.1 --rate 40/m --max-time 30 --cacert "$WORK/certs/ca.crt" \
		-o /dev/null -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
		"https://$1/v2/" "https://$1/v2/" "https://$1/v2/") || return 1
	after=$(idle_releases) || return 1
	echo "$out"
	echo "nexmux_idle_releases_total $before -> $after"
	[[ $(tr '\n' ' ' <<<"$out") == "401 1 401 0 401 0 " ]] || {
		echo "want three 401s on one connection"
		return 1
	}
	awk -v a="$after" -v b="$before" 'BEGIN { exit !(a - b >= 2) }' || {
		echo "want two releases"
		return 1
	}
}

# curl_challenge HOST PORT: GET /v2/ with the test CA verifying the chain
# must answer 401 and a Bearer realm on that host:port (force-basic-auth:
# Nexus's BASIC challenge, which names no URL).
curl_challenge() {
	local hdrs
	hdrs=$(curl -sS -o /dev/null -D - --max-time 20 --cacert "$WORK/certs/ca.crt" \
		"https://$1:$2/v2/" | tr -d '\r') || return 1
	echo "$hdrs"
	[[ $(awk 'NR==1{print $2}' <<<"$hdrs") == 401 ]] || {
		echo "want 401"
		return 1
	}
	if force_basic; then
		grep -q '^[Ww]ww-[Aa]uthenticate: BASIC realm="Sonatype Nexus Repository Manager"' <<<"$hdrs" || {
			echo "want Nexus's BASIC challenge"
			return 1
		}
		return 0
	fi
	grep -qi '^www-authenticate: .*realm="https://' <<<"$hdrs" || {
		echo "want a WWW-Authenticate realm on https"
		return 1
	}
}

# ------------------------------------------------------------------ main ---

log "nexmux end-to-end test (docker, skopeo) in $ROOT"
if [[ $(id -u) != 0 ]]; then
	FAILED=1
	FAILED_NAMES+=("must run as root (dockerd, /etc/hosts, iptables)")
	exit 1
fi
command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH=/usr/local/go/bin:$PATH

WORK=$(mktemp -d /tmp/nexmux-e2e.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/logs" "$WORK/certs" "$WORK/skopeo-certs" "$WORK/tmp"
export DOCKER_HOST=unix://$WORK/docker.sock
export DOCKER_CONFIG=$WORK/docker-config
export REGISTRY_AUTH_FILE=$WORK/skopeo-auth.json
export TMPDIR=$WORK/tmp
# Leftovers of a run that could not clean up (killed with SIGKILL).
remove_iptables_rules
remove_hosts_lines

step "install docker.io, skopeo, iptables if missing" install_packages || abort
# The docker.io CLI matches its dockerd; another docker earlier in PATH may not.
if [[ -x /usr/bin/docker ]] && dpkg -S /usr/bin/docker >/dev/null 2>&1; then
	docker() { /usr/bin/docker "$@"; }
	log "docker CLI: /usr/bin/docker (from the docker.io package)"
fi
for p in "$NEXUS_PORT" "$NEXMUX_PORT" "$LEGACY_PULL" "$LEGACY_PUSH"; do
	if port_open "$p"; then
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("port 127.0.0.1:$p is already in use")
		log "FAIL: port 127.0.0.1:$p is already in use (another fixture or nexmux running?)"
		abort
	fi
done
step "build nexmux, nexus-fixture, gencert" build || abort
step "generate test CA and server certificate" \
	./bin/gencert -dir "$WORK/certs" -hosts "*.nexmux.test,nexmux.test,localhost,127.0.0.1,::1" || abort
cp "$WORK/certs/ca.crt" "$WORK/skopeo-certs/ca.crt"

# shellcheck disable=SC2054 # the commas are part of a --route value
NEXMUX_ARGS=(--listen "127.0.0.1:$NEXMUX_PORT" --upstream "http://127.0.0.1:$NEXUS_PORT$NEXUS_CTX"
	--cert "$WORK/certs/server.crt" --key "$WORK/certs/server.key"
	--route team-a.nexmux.test=pull:team-a,push:team-a-hosted
	--route team-a-push.nexmux.test=team-a-hosted
	--route team-b.nexmux.test=team-b
	--route team-b-push.nexmux.test=team-b-hosted
	--port "$LEGACY_PULL=team-a" --port "$LEGACY_PUSH=team-a-hosted"
	--port "$LEGACY_ONE=pull:team-a,push:team-a-hosted"
	--metrics-listen "127.0.0.1:$METRICS_PORT")
mirror_args "$WORK" "$USER_PASS" && NEXMUX_ARGS+=("${MIRROR_ARGS[@]}")
step "nexmux check accepts the configuration" ./bin/nexmux check "${NEXMUX_ARGS[@]}" || abort
step "start nexus-fixture on 127.0.0.1:$NEXUS_PORT" start_fixture || abort
step "start nexmux on 127.0.0.1:$NEXMUX_PORT" start_nexmux || abort
step "add /etc/hosts entries" add_hosts || abort
step "trust the test CA in /etc/docker/certs.d" trust_all \
	"team-a.nexmux.test:$NEXMUX_PORT" "team-a-push.nexmux.test:$NEXMUX_PORT" \
	"team-b.nexmux.test:$NEXMUX_PORT" "team-b-push.nexmux.test:$NEXMUX_PORT" \
	"nexus.nexmux.test:$LEGACY_PULL" "nexus.nexmux.test:$LEGACY_PUSH" \
	"nexus.nexmux.test:$LEGACY_ONE" || abort
LEGACY_OK=no
if step "nexmux iptables | iptables-restore: :$LEGACY_PULL and :$LEGACY_PUSH reach :$NEXMUX_PORT" nexmux_iptables; then
	LEGACY_OK=yes
fi
step "start a private dockerd ($DOCKER_HOST)" start_dockerd || abort
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/policy.json"
SKOPEO_COMMON=(--policy "$WORK/policy.json")

# Images: one per path, so each push really uploads its layer.
APP=team-a-push.nexmux.test:$NEXMUX_PORT/e2e/app:1
LEGACY=nexus.nexmux.test:$LEGACY_PUSH/e2e/legacy:1
SPLITREF=team-a.nexmux.test:$NEXMUX_PORT/e2e/split:1
APP_ID=$(make_image "$APP" 4 2>"$WORK/logs/import-app.log") || true
LEGACY_ID=$(make_image "$LEGACY" 3 2>"$WORK/logs/import-legacy.log") || true
SPLIT_ID=$(make_image "$SPLITREF" 2 2>"$WORK/logs/import-split.log") || true
ONEREF_HOST=nexus.nexmux.test:$LEGACY_ONE
ONEREF=$ONEREF_HOST/e2e/one:1
ONE_ID=$(make_image "$ONEREF" 2 2>"$WORK/logs/import-one.log") || true
step "docker import test images (no pull)" test -n "$APP_ID" -a -n "$LEGACY_ID" -a -n "$SPLIT_ID" -a -n "$ONE_ID" || {
	cat "$WORK"/logs/import-*.log
	abort
}
log "images: app $APP_ID, legacy $LEGACY_ID, split $SPLIT_ID, one $ONE_ID"

# TLS and challenge, with verification (docker skips it for 127.0.0.0/8).
step "curl https://team-a.nexmux.test:$NEXMUX_PORT/v2/ verifies the chain, answers 401 + realm" \
	curl_challenge team-a.nexmux.test "$NEXMUX_PORT" || true
if [[ $LEGACY_OK == yes ]]; then
	step "curl https://nexus.nexmux.test:$LEGACY_PUSH/v2/ (legacy port) answers 401 + realm" \
		curl_challenge nexus.nexmux.test "$LEGACY_PUSH" || true
fi

step "curl on one keep-alive connection, pausing past --idle-release-after: released and resumed" \
	curl_keepalive "team-a.nexmux.test:$NEXMUX_PORT" || true

# --- by SNI name
A_PUSH=team-a-push.nexmux.test:$NEXMUX_PORT
A_PULL=team-a.nexmux.test:$NEXMUX_PORT
step "docker login $A_PUSH" docker_login "$A_PUSH" || true
step "docker login $A_PULL" docker_login "$A_PULL" || true
APP_PUSHED=no
step "docker push $APP" push "$APP" && APP_PUSHED=yes
APP_DIGEST=$(pushed_digest "$APP" || true)
step "docker rmi the pushed image" remove_image "$APP_ID" || true
if [[ $APP_PUSHED == yes ]]; then
	step "docker pull $A_PULL/e2e/app:1 (group) gives the pushed image" \
		pull_same "$A_PULL/e2e/app:1" "$APP_ID" "$APP_DIGEST" || true
else
	skip "docker pull $A_PULL/e2e/app:1 (group) gives the pushed image" "push failed"
fi

# --- by legacy connector port (iptables REDIRECT + SO_ORIGINAL_DST)
if [[ $LEGACY_OK == yes ]]; then
	step "docker login nexus.nexmux.test:$LEGACY_PUSH" docker_login "nexus.nexmux.test:$LEGACY_PUSH" || true
	step "docker login nexus.nexmux.test:$LEGACY_PULL" docker_login "nexus.nexmux.test:$LEGACY_PULL" || true
	LEGACY_PUSHED=no
	step "docker push $LEGACY (legacy port -> team-a-hosted)" push "$LEGACY" && LEGACY_PUSHED=yes
	step "docker rmi the legacy image" remove_image "$LEGACY_ID" || true
	if [[ $LEGACY_PUSHED == yes ]]; then
		step "docker pull nexus.nexmux.test:$LEGACY_PULL/e2e/legacy:1 (legacy port -> team-a) gives the pushed image" \
			pull_same "nexus.nexmux.test:$LEGACY_PULL/e2e/legacy:1" "$LEGACY_ID" "$(pushed_digest "$LEGACY" || true)" || true
	else
		skip "docker pull nexus.nexmux.test:$LEGACY_PULL/e2e/legacy:1 gives the pushed image" "push failed"
	fi
else
	skip "legacy connector port push/pull" "iptables REDIRECT could not be set up"
fi

# --- one name per team: team-a.nexmux.test (SNI) and :18084 (legacy port)
# push into team-a-hosted and pull through the team-a group.
if step "docker push $SPLITREF (pull:team-a,push:team-a-hosted)" push "$SPLITREF"; then
	SPLIT_DIGEST=$(pushed_digest "$SPLITREF" || true)
	step "the one-name push landed in team-a-hosted (skopeo inspect via team-a-push)" \
		expect_digest "team-a-push.nexmux.test:$NEXMUX_PORT/e2e/split:1" "$SPLIT_DIGEST" || true
	step "docker rmi the one-name image" remove_image "$SPLIT_ID" || true
	step "docker pull $SPLITREF (same name) gives the pushed image" \
		pull_same "$SPLITREF" "$SPLIT_ID" "$SPLIT_DIGEST" || true
else
	skip "docker pull of the one-name image" "push failed"
fi
if [[ $LEGACY_OK == yes ]]; then
	step "docker login $ONEREF_HOST" docker_login "$ONEREF_HOST" || true
	if step "docker push $ONEREF (legacy port, one name)" push "$ONEREF"; then
		ONE_DIGEST=$(pushed_digest "$ONEREF" || true)
		step "docker rmi the legacy one-name image" remove_image "$ONE_ID" || true
		step "docker pull $ONEREF (same legacy name) gives the pushed image" \
			pull_same "$ONEREF" "$ONE_ID" "$ONE_DIGEST" || true
	else
		skip "docker pull of the legacy one-name image" "push failed"
	fi
fi

# --- isolation: team-b does not see team-a's images
B_PULL=team-b.nexmux.test:$NEXMUX_PORT
B_PUSH=team-b-push.nexmux.test:$NEXMUX_PORT
step "docker login $B_PULL" docker_login "$B_PULL" || true
step "docker pull $B_PULL/e2e/app:1 is refused (not in team-b)" pull_refused "$B_PULL/e2e/app:1" || true

# --- skopeo, a second client implementation (and it verifies certificates)
if [[ -n $APP_DIGEST ]]; then
	step "skopeo inspect $A_PULL/e2e/app:1 shows the pushed digest" \
		expect_digest "$A_PULL/e2e/app:1" "$APP_DIGEST" || true
	copy_args=(--src-creds "$USER_PASS" --dest-creds "$USER_PASS"
		--src-cert-dir "$WORK/skopeo-certs" --dest-cert-dir "$WORK/skopeo-certs")
	skopeo copy --help 2>&1 | grep -q -- --preserve-digests && copy_args+=(--preserve-digests)
	if step "skopeo copy $A_PULL/e2e/app:1 -> $B_PUSH/e2e/copied:1" \
		skopeo "${SKOPEO_COMMON[@]}" copy "${copy_args[@]}" \
		"docker://$A_PULL/e2e/app:1" "docker://$B_PUSH/e2e/copied:1"; then
		step "skopeo inspect $B_PULL/e2e/copied:1 shows the same digest" \
			expect_digest "$B_PULL/e2e/copied:1" "$APP_DIGEST" || true
	else
		skip "skopeo inspect $B_PULL/e2e/copied:1 shows the same digest" "copy failed"
	fi
	if step "skopeo copy $A_PULL/e2e/app:1 -> $A_PULL/e2e/skopeo-one:1 (one name)" \
		skopeo "${SKOPEO_COMMON[@]}" copy "${copy_args[@]}" \
		"docker://$A_PULL/e2e/app:1" "docker://$A_PULL/e2e/skopeo-one:1"; then
		step "skopeo inspect $A_PULL/e2e/skopeo-one:1 (same name) shows the same digest" \
			expect_digest "$A_PULL/e2e/skopeo-one:1" "$APP_DIGEST" || true
	fi
else
	skip "skopeo inspect/copy of e2e/app:1" "docker push gave no digest"
fi

onename_steps
ha_steps
mirror_steps

# Last, after every client: with the rules gone and no other NAT in this
# namespace, conntrack stops tracking new connections, and a redirected
# connection's leftover entry (TIME_WAIT 120 s, or ESTABLISHED for days when
# it ended unseen) answers SO_ORIGINAL_DST for a direct connection to
# :$NEXMUX_PORT from the same source port, which nexmux then routes by the
# legacy port (TestNetnsOriginalDstSourcePortReuse; README, "Legacy connector
# ports"). The registry-mirrors pull once failed so. While the rules are
# loaded, NAT gives such a connection another source port.
if [[ $LEGACY_OK == yes ]]; then
	step "nexmux iptables --delete | iptables-restore restores the nat table" nexmux_iptables_delete || true
fi

log "all steps done"
# cleanup (EXIT trap) prints the summary and sets the exit status.
