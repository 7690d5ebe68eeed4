# shellcheck shell=bash
# Mirror-name steps of make e2e (sourced by scripts/e2e.sh; issue 16): one
# name, mirror.nexmux.test, serves the fixture's proxy repositories
# (-proxy-repos) to real clients: ctr --hosts-dir (ns form through
# _default, prefix form through override_path, host path form), skopeo with a registries.conf
# mirror, the private dockerd's registry-mirrors, and crane. The client
# configurations are the README's "Registry mirror" texts, with this run's
# host name for mirror.example.com. Every pulled digest must be the one the
# fixture seeded (a misrouted pull finds another digest).

MIRROR_HOST=mirror.nexmux.test
# A second mirror name whose docker.io repository does not exist in Nexus
# (renamed, deleted): its /v2/ ping and token must move on to its other
# repository, or no registry of the name can be pulled.
MIRROR_GONE_HOST=mirror-gone.nexmux.test
HOSTS+=("$MIRROR_HOST" "$MIRROR_GONE_HOST")

# mirror_args DIR USER:PASS: MIRROR_ARGS, the --mirror flags and the
# --mirror-auth-file (written into DIR) docker needs.
mirror_args() {
	printf '%s\n' "$2" >"$1/mirror.auth"
	chmod 600 "$1/mirror.auth"
	MIRROR_ARGS=(--mirror "$MIRROR_HOST/docker.io=dockerhub-proxy"
		--mirror "$MIRROR_HOST/ghcr.io=ghcr-proxy"
		--mirror "$MIRROR_HOST/quay.io=quay-proxy"
		--mirror "$MIRROR_HOST/registry.k8s.io=k8s-proxy"
		--mirror "$MIRROR_GONE_HOST/docker.io=dockerhub-gone"
		--mirror "$MIRROR_GONE_HOST/ghcr.io=ghcr-proxy"
		--mirror-auth-file "$1/mirror.auth")
}

# mirror_client_files DIR CA: the README's client configurations in DIR:
# certs.d/_default/hosts.toml (ns form) and certs.d/ghcr.io/hosts.toml
# (override_path), certs.d-path/ghcr.io/hosts.toml (the registry as the
# host's path, no override_path), all trusting CA; registries.conf;
# mirror-ca/ca.crt for skopeo --cert-dir.
mirror_client_files() {
	mkdir -p "$1/certs.d/_default" "$1/certs.d/ghcr.io" "$1/certs.d-path/ghcr.io" "$1/mirror-ca" || return 1
	{ readme_text hosts-default && printf '  ca = "%s"\n' "$2"; } >"$1/certs.d/_default/hosts.toml"
	{ readme_text hosts-ghcr && printf '  ca = "%s"\n' "$2"; } >"$1/certs.d/ghcr.io/hosts.toml"
	{ readme_text hosts-ghcr-path && printf '  ca = "%s"\n' "$2"; } >"$1/certs.d-path/ghcr.io/hosts.toml"
	readme_text registries-conf >"$1/registries.conf"
	cp "$2" "$1/mirror-ca/ca.crt"
}

# readme_text NAME: the code block after "<!-- e2e: NAME -->" in README.md,
# with this run's mirror host.
readme_text() {
	awk -v m="<!-- e2e: $1 -->" '
		$0 == m { found = 1; next }
		found && /^```/ { if (inside) exit; inside = 1; next }
		inside { print }' "$ROOT/README.md" |
		sed "s/mirror\.example\.com/$MIRROR_HOST:$NEXMUX_PORT/g"
}

# mirror_daemon_json FILE: add the README's registry-mirrors to the private
# dockerd's daemon.json (merged with what start_dockerd put there).
mirror_daemon_json() {
	local old new
	old=$(sed '1d;$d' "$1")
	new=$(readme_text daemon-json | sed '1d;$d')
	if [[ -n $old ]]; then
		printf '{\n%s,\n%s\n}\n' "$old" "$new" >"$1"
	else
		readme_text daemon-json >"$1"
	fi
	cat "$1"
}

# seeded REPO NAME:TAG: the digest the fixture logged for it.
seeded() {
	awk -v r="$1" -v i="$2" '$3 == "seeded" && $4 == r && $5 == i { print $6 }' "$WORK/logs/fixture.log" | tail -n 1
}

same_digest() { # WHAT GOT WANT
	echo "$1: got $2, want $3"
	[[ -n $3 && $2 == "$3" ]]
}

mirror_ctr_setup() {
	CTR_SOCK=$(find "$WORK/docker-exec" -name containerd.sock 2>/dev/null | head -n 1)
	[[ -S $CTR_SOCK ]] || {
		echo "no containerd socket under $WORK/docker-exec"
		return 1
	}
	mirror_client_files "$WORK" "$WORK/certs/ca.crt" || return 1
	head -n 50 "$WORK"/certs.d/*/hosts.toml
}

# ctr_pull REF REPO NAME:TAG FORM [HOSTS_DIR]: ctr images pull through the
# hosts dir (certs.d by default); the image's digest must be the seeded
# one, and the HTTP dump must show the form (ns=, the /v2/<registry>/
# prefix or the /<registry>/v2/ host path) the client used.
ctr_pull() {
	local ref=$1 want got
	want=$(seeded "$2" "$3")
	ctr -a "$CTR_SOCK" -n nexmux-e2e-mirror images pull --snapshotter native --http-dump \
		--hosts-dir "${5:-$WORK/certs.d}" "$ref" >"$WORK/ctr.out" 2>&1 || {
		tail -n 60 "$WORK/ctr.out"
		return 1
	}
	grep -oE '(GET|HEAD) [^ ]*/v2/[^ ]*|https://[^" ]*/v2/[^" ]*' "$WORK/ctr.out" | sort -u | head -n 20
	grep -q "$4" "$WORK/ctr.out" || {
		echo "no request with $4 in the HTTP dump"
		return 1
	}
	got=$(ctr -a "$CTR_SOCK" -n nexmux-e2e-mirror images ls | awk -v r="$ref" '$1 == r { print $3 }')
	same_digest "ctr $ref" "$got" "$want"
}

# skopeo_mirror REF REPO NAME:TAG: inspect through the registries.conf
# mirror (--no-tags: tags are listed at the source registry, never at a
# mirror, and this run has no internet).
skopeo_mirror() {
	local want got
	want=$(seeded "$2" "$3")
	cat "$WORK/registries.conf"
	got=$(skopeo "${SKOPEO_COMMON[@]}" --registries-conf "$WORK/registries.conf" inspect --no-tags \
		--cert-dir "$WORK/skopeo-certs" --format '{{.Digest}}' "docker://$1") || return 1
	same_digest "skopeo $1" "$got" "$want"
}

docker_mirror_pull() { # NAME:TAG
	local want rd d got="" n0 d0
	want=$(seeded dockerhub-proxy "library/$1")
	n0=$(wc -l <"$WORK/logs/nexmux.log") d0=$(wc -l <"$WORK/logs/dockerd.log")
	docker pull "$1" || {
		mirror_pull_explain "$n0" "$d0"
		return 1
	}
	rd=$(docker image inspect -f '{{join .RepoDigests " "}}' "$1")
	echo "repo digests: $rd"
	# The same image may also be known under other names (earlier steps
	# push it elsewhere): take the digest recorded for the Docker Hub name.
	for d in $rd; do
		case ${d%@*} in "${1%%:*}" | "library/${1%%:*}" | "docker.io/library/${1%%:*}") got=${d##*@} ;; esac
	done
	same_digest "docker pull $1" "$got" "$want" || {
		mirror_pull_explain "$n0" "$d0"
		return 1
	}
}

# mirror_pull_explain NEXMUX_LINES DOCKERD_LINES: what explains a failed
# pull through registry-mirrors: the nexmux and dockerd log lines written
# since the step began (those line counts), the nat rules, and conntrack's
# entries for the client ports nexmux routed by a legacy port during the
# step (a mirror pull has none of its own: such a line means SO_ORIGINAL_DST
# named a legacy port) and for the legacy ports redirected to the listener.
# conntrack (the Debian package) is optional.
mirror_pull_explain() {
	local since ports p
	since=$(tail -n +"$(($1 + 1))" "$WORK/logs/nexmux.log")
	echo "---- nexmux log lines of this step (last 12)"
	tail -n 12 <<<"$since"
	echo "---- dockerd log lines of this step (last 8 about endpoints and errors)"
	tail -n +"$(($2 + 1))" "$WORK/logs/dockerd.log" | grep -Ei 'endpoint|mirror|error|unauthorized' | tail -n 8
	echo "---- iptables -t nat -S"
	iptables -t nat -S 2>&1 | grep -v '^-P' || echo "(no nat rules)"
	ports=$(grep -E ' route=:[0-9]+ ' <<<"$since" | grep -oE 'client=[^ ]*:[0-9]+' | sed 's/.*://' | sort -u)
	[[ -n $ports ]] && echo "port-routed client ports in this step (a mirror pull has none): ${ports//$'\n'/ }"
	if ! command -v conntrack >/dev/null; then
		echo "(conntrack is not installed: no conntrack entries to show)"
		return 0
	fi
	for p in $ports; do
		echo "---- conntrack entries with port $p"
		conntrack -L -p tcp 2>/dev/null | grep -E "port=$p( |\$)" | head -n 4
	done
	echo "---- conntrack: entries redirected from a legacy port to :$NEXMUX_PORT, by state"
	for p in "$LEGACY_PULL" "$LEGACY_PUSH" "$LEGACY_ONE"; do
		printf ':%s ' "$p"
		conntrack -L -p tcp --orig-port-dst "$p" --reply-port-src "$NEXMUX_PORT" 2>/dev/null |
			awk '{ n[$4]++ } END { for (s in n) printf "%s=%d ", s, n[s]; print "" }'
	done
}

build_crane() {
	local v
	v=$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry) || return 1
	GOBIN=$ROOT/bin go install "github.com/google/go-containerregistry/cmd/crane@$v"
}

# docker_named_pull REF REPO NAME:TAG: docker pull naming the mirror as
# the image's registry (MIRROR/docker.io/alpine:3, a one-component Docker
# Hub name docker does not put library/ before).
docker_named_pull() {
	local want got
	want=$(seeded "$2" "$3")
	docker pull "$1" || return 1
	got=$(docker image inspect -f '{{join .RepoDigests "\n"}}' "$1" | awk -F@ -v r="${1%:*}" '$1 == r { print $2 }')
	same_digest "docker pull $1" "$got" "$want"
}

crane_mirror() { # REF REPO NAME:TAG
	local want got
	want=$(seeded "$2" "$3")
	got=$(SSL_CERT_FILE=$WORK/certs/ca.crt ./bin/crane digest "$1") || return 1
	SSL_CERT_FILE=$WORK/certs/ca.crt ./bin/crane pull "$1" "$WORK/crane.tar" || return 1
	same_digest "crane $1" "$got" "$want"
}

# mirror_write_refused: a write on the mirror name is refused by nexmux
# itself (405 UNSUPPORTED; the Go tests assert nothing reaches Nexus).
mirror_write_refused() {
	local out
	out=$(SSL_CERT_FILE=$WORK/certs/ca.crt ./bin/crane delete "$MIRROR_HOST:$NEXMUX_PORT/ghcr.io/acme/app@$(seeded ghcr-proxy acme/app:1)" 2>&1) && {
		echo "delete succeeded: $out"
		return 1
	}
	echo "$out"
	grep -q UNSUPPORTED <<<"$out"
}

# skopeo_gone_default: skopeo pings /v2/ at the mirror-gone name's root
# (its docker.io repository, which does not exist) before it reads
# ghcr.io/probe:1 there; a failed mirror sends it to ghcr.io itself, which
# this run cannot reach.
skopeo_gone_default() {
	local want got
	want=$(seeded ghcr-proxy probe:1)
	printf '[[registry]]\nprefix = "ghcr.io"\nlocation = "ghcr.io"\n\n[[registry.mirror]]\nlocation = "%s/ghcr.io"\n' \
		"$MIRROR_GONE_HOST:$NEXMUX_PORT" >"$WORK/registries-gone.conf"
	cat "$WORK/registries-gone.conf"
	got=$(skopeo "${SKOPEO_COMMON[@]}" --registries-conf "$WORK/registries-gone.conf" inspect --no-tags \
		--cert-dir "$WORK/skopeo-certs" --format '{{.Digest}}' docker://ghcr.io/probe:1) || return 1
	same_digest "skopeo ghcr.io/probe:1 via $MIRROR_GONE_HOST" "$got" "$want"
}

mirror_steps() {
	local M=$MIRROR_HOST:$NEXMUX_PORT
	step "trust the test CA for $M in /etc/docker/certs.d" trust_ca "$M" || true
	if step "ctr: containerd socket and hosts dir from the README texts" mirror_ctr_setup; then
		step "ctr images pull docker.io/library/alpine:3 via _default (ns form) = seeded digest" \
			ctr_pull docker.io/library/alpine:3 dockerhub-proxy library/alpine:3 'ns=docker.io' || true
		step "ctr images pull quay.io/acme/tool:2 via _default (ns form) = seeded digest" \
			ctr_pull quay.io/acme/tool:2 quay-proxy acme/tool:2 'ns=quay.io' || true
		step "ctr images pull registry.k8s.io/pause:3.10 via _default (ns form) = seeded digest" \
			ctr_pull registry.k8s.io/pause:3.10 k8s-proxy pause:3.10 'ns=registry.k8s.io' || true
		step "ctr images pull ghcr.io/acme/app:1 via override_path (prefix form) = seeded digest" \
			ctr_pull ghcr.io/acme/app:1 ghcr-proxy acme/app:1 '/v2/ghcr.io/acme/app/' || true
		step "ctr images pull ghcr.io/probe:1 via a host path without override_path (/ghcr.io/v2/) = seeded digest" \
			ctr_pull ghcr.io/probe:1 ghcr-proxy probe:1 ' /ghcr.io/v2/probe/' "$WORK/certs.d-path" || true
	fi
	step "skopeo inspect docker://ghcr.io/probe:1 with registries.conf mirror $M/ghcr.io = seeded digest" \
		skopeo_mirror ghcr.io/probe:1 ghcr-proxy probe:1 || true
	step "docker pull alpine:3 through registry-mirrors (no ns, library/) = seeded digest" \
		docker_mirror_pull alpine:3 || true
	step "docker pull $M/docker.io/alpine:3 (one-component Docker Hub name, read as library/alpine) = seeded digest" \
		docker_named_pull "$M/docker.io/alpine:3" dockerhub-proxy library/alpine:3 || true
	step "skopeo inspect docker://ghcr.io/probe:1 via $MIRROR_GONE_HOST (its docker.io repository missing in Nexus) = seeded digest" \
		skopeo_gone_default || true
	if step "go install crane (go-containerregistry of go.mod)" build_crane; then
		step "crane digest+pull $M/quay.io/probe:1 = seeded digest" \
			crane_mirror "$M/quay.io/probe:1" quay-proxy probe:1 || true
		step "crane digest+pull $M/probe:1 (docker.io by default) = seeded digest" \
			crane_mirror "$M/probe:1" dockerhub-proxy probe:1 || true
		step "crane delete on the mirror name is refused with 405 UNSUPPORTED" mirror_write_refused || true
		step "crane digest+pull $MIRROR_GONE_HOST/ghcr.io/probe:1 (its docker.io repository missing) = seeded digest" \
			crane_mirror "$MIRROR_GONE_HOST:$NEXMUX_PORT/ghcr.io/probe:1" ghcr-proxy probe:1 || true
	fi
}
