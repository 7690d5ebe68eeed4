# shellcheck shell=bash
# Sourced by scripts/e2e.sh: one name per team (issue 18) with real clients.
#
# The fixture's team-a group gets the seeded Docker Hub proxy as a member
# (ONENAME_FIXTURE_ARGS), so library/alpine:3, a multi-arch index, exists
# only in a proxy member. Through the split name team-a.nexmux.test
# (pull:team-a,push:team-a-hosted) ctr, crane, docker and skopeo copy it to
# new tags, re-push the upstream tag itself, and pull the results back
# through the group name and through team-a-push.nexmux.test (hosted only):
# that the hosted-only pull works with every digest verified proves the
# hosted repository holds every child manifest and blob.
#
# Each client operation's requests, as the fixture saw them (method, path,
# query with the token scope, status, repository nexmux chose), are written
# to $WORK/traces/<client>-<operation>.txt; E2E_TRACE_DIR=dir copies them
# there (fixtures/testdata/traces holds a recorded set).

ONENAME_FIXTURE_ARGS=(-proxy-repos -repos "hosted:team-a-hosted,proxy:team-a-proxy,group:team-a=team-a-hosted+team-a-proxy+dockerhub-proxy,hosted:team-b-hosted,group:team-b=team-b-hosted")
ONENAME_NS=nexmux-e2e-onename # containerd namespace of the ctr steps
ONENAME_UPSTREAM=library/alpine:3
ONENAME_CTR_SOCK=""

# trace_run NAME CMD...: run CMD and keep the fixture's request lines it
# caused (log.Printf timestamp dropped, registry-internal lines left out).
trace_run() {
	local name=$1 before rc=0
	shift
	mkdir -p "$WORK/traces"
	before=$(wc -l <"$WORK/logs/fixture.log")
	"$@" || rc=$?
	tail -n +"$((before + 1))" "$WORK/logs/fixture.log" | grep -v ' registry: ' |
		grep -E ' (GET|HEAD|POST|PUT|PATCH|DELETE) ' | cut -d' ' -f3- |
		sed -E 's/_state=[^& ]*/_state=.../; s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/<uuid>/g' \
			>"$WORK/traces/$name.txt"
	echo "trace $name: $(wc -l <"$WORK/traces/$name.txt") requests"
	if [[ -n ${E2E_TRACE_DIR:-} ]]; then
		mkdir -p "$E2E_TRACE_DIR" && cp "$WORK/traces/$name.txt" "$E2E_TRACE_DIR/"
	fi
	return "$rc"
}

# raw_digest REF: sha256 of the manifest (or index) bytes skopeo fetches.
raw_digest() {
	local f=$WORK/raw-manifest
	skopeo "${SKOPEO_COMMON[@]}" inspect --raw --creds "$USER_PASS" --cert-dir "$WORK/skopeo-certs" "docker://$1" >"$f" || return 1
	printf 'sha256:%s\n' "$(sha256sum <"$f" | cut -d' ' -f1)"
}

# expect_raw_digest REF WANT
expect_raw_digest() {
	local d
	d=$(raw_digest "$1") || return 1
	echo "docker://$1: $d (want $2)"
	[[ $d == "$2" ]]
}

# pull_all_verify REF WANT: skopeo copy --all to a dir: layout (skopeo
# verifies every blob digest on the way); every child manifest it wrote must
# hash to its name, and the index (or manifest) REF serves must be WANT.
# (dir: stores an index converted to OCI, so its own bytes differ.)
pull_all_verify() {
	local dir f n=0
	dir=$WORK/pulled-${1//[^a-zA-Z0-9]/_}
	rm -rf "$dir"
	skopeo "${SKOPEO_COMMON[@]}" copy --all --src-creds "$USER_PASS" \
		--src-cert-dir "$WORK/skopeo-certs" "docker://$1" "dir:$dir" || return 1
	ls -l "$dir"
	for f in "$dir"/*.manifest.json; do
		[[ -e $f ]] || continue
		n=$((n + 1))
		[[ $(sha256sum <"$f" | cut -d' ' -f1) == "$(basename "$f" .manifest.json)" ]] || {
			echo "$f does not hash to its name"
			return 1
		}
	done
	echo "$1 pulled whole: $n child manifests verified"
	expect_raw_digest "$1" "$2"
}

ctr_() { ctr --address "$ONENAME_CTR_SOCK" --namespace "$ONENAME_NS" "$@"; }
ctr_remote() { # ctr_remote SUBCOMMAND... REF: registry options added
	ctr_ "$@" --user "$USER_PASS" --tlscacert "$WORK/certs/ca.crt"
}

find_ctr_sock() {
	ONENAME_CTR_SOCK=$(find "$WORK/docker-exec" -name containerd.sock -type s 2>/dev/null | head -n 1)
	[[ -z $ONENAME_CTR_SOCK && -S /run/containerd/containerd.sock ]] && ONENAME_CTR_SOCK=/run/containerd/containerd.sock
	echo "containerd socket: ${ONENAME_CTR_SOCK:-none}"
	[[ -n $ONENAME_CTR_SOCK ]] && ctr_ version
}

ctr_fetch() { ctr_ content fetch --all-platforms --user "$USER_PASS" --tlscacert "$WORK/certs/ca.crt" "$1"; }
ctr_push() { ctr_ images tag --force "$1" "$2" && ctr_ images push --user "$USER_PASS" --tlscacert "$WORK/certs/ca.crt" "$2"; }
ctr_pull_verify() { # REF WANT: fetch every platform into an empty namespace
	local refs
	refs=$(ctr_ images ls -q)
	[[ -z $refs ]] || ctr_ images rm --sync $refs || return 1
	ctr_ content ls -q | grep -q . && {
		echo "content left in namespace $ONENAME_NS after removing every image"
		ctr_ content ls
	}
	ctr_ content fetch --all-platforms --user "$USER_PASS" --tlscacert "$WORK/certs/ca.crt" "$1" || return 1
	local got
	got=$(ctr_ images ls | awk -v r="$1" '$1 == r {print $3}')
	echo "ctr image $1: $got (want $2)"
	[[ $got == "$2" ]]
}

crane_install() {
	local v
	v=$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry) || return 1
	GOBIN=$ROOT/bin go install "github.com/google/go-containerregistry/cmd/crane@$v" && ./bin/crane version
}
crane_() { SSL_CERT_FILE=$WORK/certs/ca.crt ./bin/crane "$@"; }
both_digests() { expect_raw_digest "$1" "$3" && expect_raw_digest "$2" "$3"; }
docker_retag_push() { docker tag "$1" "$2" && push "$2"; }

onename_steps() {
	local A=team-a.nexmux.test:$NEXMUX_PORT H=team-a-push.nexmux.test:$NEXMUX_PORT
	local UP=$A/$ONENAME_UPSTREAM want
	log "buildx/BuildKit: $(apt-cache policy docker-buildx 2>/dev/null | head -n 1 | grep . || echo 'no docker-buildx package in the configured apt sources; BuildKit steps not run')"
	if ! want=$(raw_digest "$UP"); then
		step "skopeo inspect $UP (multi-arch index in the proxy member)" false || true
		skip "one-name client steps" "the seeded index is not reachable through $A"
		return 0
	fi
	log "upstream index $UP: $want"

	# docker first, while hosted holds none of the layers: it asks hosted to
	# mount them from library/alpine, then uploads them. Pull the upstream
	# (one platform), retag, push, pull back.
	local dref=$A/onename/docker:1 id
	if step "docker pull $UP" trace_run docker-pull-upstream docker pull "$UP" &&
		step "docker tag + push $dref (retagged upstream image)" trace_run docker-push docker_retag_push "$UP" "$dref"; then
		id=$(image_id "$dref" || true)
		local dd
		dd=$(pushed_digest "$dref" || true)
		step "docker rmi $dref and $UP" docker rmi "$dref" "$UP" || true
		step "docker pull $dref (group) gives the pushed image" trace_run docker-pull pull_same "$dref" "$id" "$dd" || true
		step "skopeo inspect $H/onename/docker:1 (hosted) is $dd" expect_raw_digest "$H/onename/docker:1" "$dd" || true
		step "skopeo pull --all $H/onename/docker:1 (hosted holds it all)" pull_all_verify "$H/onename/docker:1" "$dd" || true
	fi

	# skopeo (it stores the index as an OCI index: its digest changes, the
	# children's do not; --digestfile says what it wrote)
	local sd
	if step "skopeo copy --all $UP -> $A/onename/skopeo:1" trace_run skopeo-copy-all \
		skopeo "${SKOPEO_COMMON[@]}" copy --all --digestfile "$WORK/skopeo-digest" \
		--src-creds "$USER_PASS" --dest-creds "$USER_PASS" \
		--src-cert-dir "$WORK/skopeo-certs" --dest-cert-dir "$WORK/skopeo-certs" \
		"docker://$UP" "docker://$A/onename/skopeo:1"; then
		sd=$(cat "$WORK/skopeo-digest")
		step "skopeo pull --all $A/onename/skopeo:1 (group) is $sd" trace_run skopeo-pull pull_all_verify "$A/onename/skopeo:1" "$sd" || true
		step "skopeo pull --all $H/onename/skopeo:1 (hosted holds it all)" pull_all_verify "$H/onename/skopeo:1" "$sd" || true
	fi

	# crane
	if step "go install crane (go-containerregistry, go.mod's version)" crane_install; then
		if step "crane copy $UP -> $A/onename/crane:1" trace_run crane-copy crane_ copy "$UP" "$A/onename/crane:1"; then
			step "crane validate --remote $A/onename/crane:1 (group)" trace_run crane-pull crane_ validate --remote "$A/onename/crane:1" || true
			step "crane validate --remote $H/onename/crane:1 (hosted)" crane_ validate --remote "$H/onename/crane:1" || true
			step "$A/onename/crane:1 and $H/onename/crane:1 are $want" \
				both_digests "$A/onename/crane:1" "$H/onename/crane:1" "$want" || true
		fi
	fi

	# ctr (containerd 1.6 from the docker.io package)
	if step "find containerd's socket (dockerd's containerd)" find_ctr_sock &&
		step "ctr content fetch --all-platforms $UP" trace_run ctr-pull-upstream ctr_fetch "$UP"; then
		local pushed=no repushed=no
		step "ctr push $A/onename/ctr:1 (index from the proxy member, new tag)" trace_run ctr-push ctr_push "$UP" "$A/onename/ctr:1" && pushed=yes
		# The issue's case: re-push an upstream image under its own name and
		# tag; the group already answers "exists" for all of it.
		step "ctr push $UP (re-push of the upstream tag)" trace_run ctr-repush ctr_push "$UP" "$UP" && repushed=yes
		if [[ $pushed == yes ]]; then
			step "ctr pull $A/onename/ctr:1 (group) is $want" trace_run ctr-pull ctr_pull_verify "$A/onename/ctr:1" "$want" || true
			step "ctr pull $H/onename/ctr:1 (hosted) is $want" ctr_pull_verify "$H/onename/ctr:1" "$want" || true
			step "skopeo pull --all $H/onename/ctr:1 (hosted holds it all)" pull_all_verify "$H/onename/ctr:1" "$want" || true
		fi
		if [[ $repushed == yes ]] && force_basic; then
			# README, "Push and pull sessions": with Basic credentials a
			# containerd push's manifest HEADs read the group, which holds
			# the upstream tag, so ctr skips its PUTs.
			log "skipped: skopeo pull --all $H/$ONENAME_UPSTREAM (force-basic-auth: ctr's re-push is the documented limitation)"
		elif [[ $repushed == yes ]]; then
			step "skopeo pull --all $H/$ONENAME_UPSTREAM (hosted holds it all)" pull_all_verify "$H/$ONENAME_UPSTREAM" "$want" || true
		fi
	fi

}
