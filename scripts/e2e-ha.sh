# shellcheck shell=bash
# HA steps of `make e2e` (issue 15), sourced by scripts/e2e.sh, which
# provides step/skip/log/wait_port/stop_pid/make_image/push/pull_same/
# remove_image/docker_login/trust_ca, $WORK, $TAG and $USER_PASS.
#
# A three-node fixture cluster (nexus-fixture -nodes 3 -control) behind a
# second nexmux with three --upstream nodes; docker pushes and pulls through
# it while a node is killed mid-push and the node serving a layer is killed
# mid-blob (docker pull, then skopeo copy), and nexmux's /upstreams,
# metrics and the nodes' request logs must show what happened. Its host name joins e2e.sh's HOSTS and
# its certs.d entries are recorded, so e2e.sh's cleanup undoes them;
# ha_cleanup stops the processes.

HA_NODE_PORT=${E2E_HA_NODE_PORT:-18181} # node1..node3 on this port and the next two
HA_CONTROL=127.0.0.1:${E2E_HA_CONTROL_PORT:-18190}
HA_METRICS=127.0.0.1:${E2E_HA_METRICS_PORT:-18191}
HA_PORT=${E2E_HA_LISTEN_PORT:-18443}
HA_NAME=ha.nexmux.test
# In e2e.sh's /etc/hosts lines from the start: dockerd's resolver re-reads
# the file only every few seconds.
HOSTS+=("$HA_NAME")
HA_FIXTURE_PID="" HA_NEXMUX_PID=""

ha_cleanup() {
	stop_pid "$HA_NEXMUX_PID" "nexmux (HA)" 10
	stop_pid "$HA_FIXTURE_PID" "nexus-fixture (HA)" 10
}

ha_start() {
	./bin/nexus-fixture -listen "127.0.0.1:$HA_NODE_PORT" -nodes 3 -control "$HA_CONTROL" \
		-user "$USER_PASS" -data "$WORK/ha-data" >"$WORK/logs/ha-fixture.log" 2>&1 8>&- 9>&- &
	HA_FIXTURE_PID=$!
	wait_port "$((HA_NODE_PORT + 2))" "$HA_FIXTURE_PID" "nexus-fixture (HA)" || return 1
	# shellcheck disable=SC2054 # the commas are part of a --route value
	./bin/nexmux serve --listen "127.0.0.1:$HA_PORT" --metrics-listen "$HA_METRICS" \
		--upstream "http://127.0.0.1:$HA_NODE_PORT" --upstream "http://127.0.0.1:$((HA_NODE_PORT + 1))" \
		--upstream "http://127.0.0.1:$((HA_NODE_PORT + 2))" --health-interval 500ms \
		--cert "$WORK/certs/server.crt" --key "$WORK/certs/server.key" \
		--route "$HA_NAME=pull:team-a,push:team-a-hosted" >"$WORK/logs/ha-nexmux.log" 2>&1 8>&- 9>&- &
	HA_NEXMUX_PID=$!
	wait_port "$HA_PORT" "$HA_NEXMUX_PID" "nexmux (HA)" || return 1
	trust_ca "$HA_NAME:$HA_PORT"
}

ha_fault() { # ha_fault NODE QUERY
	curl -fsS -X POST "http://$HA_CONTROL/nodes/$1/faults?$2" >/dev/null
}

# ha_busiest METHOD PATTERN: the node whose log has most METHOD requests on
# paths matching PATTERN.
ha_busiest() {
	local n best="" max=0 c
	for n in node1 node2 node3; do
		c=$(curl -fsS "http://$HA_CONTROL/nodes/$n/requests" | grep -o "\"Method\":\"$1\",[^}]*\"Path\":\"[^\"]*$2" | wc -l)
		if ((c > max)); then max=$c best=$n; fi
	done
	echo "$best"
}

# ha_push_kill REF: docker push REF; as soon as an upload is under way, the
# node holding it is killed (listener closed, connections reset). The push
# must still finish (docker retries the layer, nexmux sends the retry to a
# live node); a push that ended before the kill proves nothing and fails.
ha_push_kill() {
	local i victim=""
	push "$1" >"$WORK/ha-push.out" 2>&1 &
	local pid=$!
	for ((i = 0; i < 200; i++)); do
		victim=$(ha_busiest PATCH /blobs/uploads/)
		[[ -n $victim ]] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if [[ -n $victim ]]; then
		echo "killing $victim mid-push"
		ha_fault "$victim" kill=1
	fi
	local rc=0
	wait "$pid" || rc=$?
	cat "$WORK/ha-push.out"
	[[ -n $victim ]] && ha_fault "$victim" reset=1
	[[ -n $victim ]] || {
		echo "the push ended before a node could be killed"
		return 1
	}
	return "$rc"
}

# ha_layer_node REPO: the node that serves REPO:1's layer (every blob GET
# by digest of one repository goes to its rendezvous node); prints "NODE DIGEST".
ha_layer_node() {
	local base="https://$HA_NAME:$HA_PORT/v2/$1" m d n
	m=$(curl -fsS --cacert "$WORK/certs/ca.crt" -u "$USER_PASS" \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$base/manifests/1") || return 1
	d=$(grep -o '"digest": *"sha256:[0-9a-f]*"' <<<"$m" | tail -n 1 | grep -o 'sha256:[0-9a-f]*')
	[[ -n $d ]] || return 1
	for n in node1 node2 node3; do curl -fsS -X DELETE "http://$HA_CONTROL/nodes/$n/requests"; done
	# A one-byte GET: HEAD may map to the push repository, another key.
	curl -fsS -o /dev/null --cacert "$WORK/certs/ca.crt" -u "$USER_PASS" -r 0-0 "$base/blobs/$d" || return 1
	echo "$(ha_busiest GET "/blobs/$d") $d"
}

# ha_log_entries NODE: the node's request log, one JSON entry a line.
ha_log_entries() {
	curl -fsS "http://$HA_CONTROL/nodes/$1/requests" | sed 's/},{"Method"/}\n{"Method"/g'
}

# ha_kill_mid_blob VICTIM DIGEST CMD...: VICTIM serves blobs at 8 MiB/s;
# CMD runs in the background and, one second after VICTIM started sending
# the blob, VICTIM is killed (listener closed, connections reset, like a
# crashed JVM). CMD must still succeed; VICTIM comes back afterwards.
ha_kill_mid_blob() {
	local victim=$1 digest=$2 i started="" n
	shift 2
	for n in node1 node2 node3; do curl -fsS -X DELETE "http://$HA_CONTROL/nodes/$n/requests"; done
	ha_fault "$victim" "reset=1&bytesPerSecond=8388608"
	"$@" &
	local pid=$!
	for ((i = 0; i < 600; i++)); do
		if ha_log_entries "$victim" | grep '"Method":"GET"' | grep -q "\"Path\":\"[^\"]*/blobs/$digest\""; then
			started=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if [[ -n $started ]]; then
		sleep 1
		echo "killing $victim mid-blob"
		ha_fault "$victim" kill=1
	fi
	local rc=0
	wait "$pid" || rc=$?
	ha_fault "$victim" reset=1
	[[ -n $started ]] || {
		echo "$victim was never asked for the blob"
		return 1
	}
	return "$rc"
}

# ha_resumed VICTIM DIGEST: another node's log shows the resumed
# "Range: bytes=N-" GET of the blob (N > 0), answered 206.
ha_resumed() {
	local n found=1 e
	for n in node1 node2 node3; do
		[[ $n == "$1" ]] && continue
		e=$(ha_log_entries "$n" | grep '"Method":"GET"' | grep "\"Path\":\"[^\"]*/blobs/$2\"" |
			grep '"Status":206' | grep -o '"Range":\["bytes=[1-9][0-9]*-[0-9]*"\]') || continue
		echo "$n served the resumed request: $e"
		found=0
	done
	((found == 0)) || echo "no node served a resumed Range request for $2"
	return "$found"
}

# ha_wait_writable: every node is writable again in nexmux's table.
ha_wait_writable() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $(curl -fsS "http://$HA_METRICS/upstreams" | grep -c '"state": "writable"') == 3 ]] && return 0
		sleep 0.1
	done
	echo "the nodes did not all come back writable"
	return 1
}

# ha_layer_killed CMD...: CMD runs while the node serving e2e/ha's layer
# is killed mid-body; another node's log must show the resumed download.
# Sets HA_DIGEST to the layer's digest.
ha_layer_killed() {
	local victim
	ha_wait_writable || return 1
	read -r victim HA_DIGEST < <(ha_layer_node e2e/ha)
	[[ -n $victim ]] || {
		echo "could not find the layer's node"
		return 1
	}
	echo "layer $HA_DIGEST is served by $victim"
	ha_kill_mid_blob "$victim" "$HA_DIGEST" "$@" || return 1
	ha_resumed "$victim" "$HA_DIGEST"
}

# ha_pull_kill REF ID: docker pull REF while the node serving its layer is
# killed mid-body; nexmux resumes the download from another node, docker
# gets one intact layer (its image ID is ID).
ha_pull_kill() {
	ha_layer_killed docker pull "$1" || return 1
	local id
	id=$(image_id "$1")
	echo "pulled $id, pushed $2"
	[[ $id == "$2" ]] || return 1
	local m
	m=$(curl -fsS "http://$HA_METRICS/metrics") || return 1
	grep -E '^nexmux_upstream_(resumes|failovers)_total' <<<"$m"
	# (Not curl | grep -q: grep's early exit would fail curl under pipefail.)
	grep -Eq '^nexmux_upstream_resumes_total [1-9]' <<<"$m" || {
		echo "no resume counted"
		return 1
	}
}

# ha_skopeo_kill REF: skopeo copy REF to a directory (it verifies every
# digest) while the node serving the layer is killed mid-body.
ha_skopeo_kill() {
	local dir=$WORK/ha-skopeo
	rm -rf "$dir"
	ha_layer_killed skopeo "${SKOPEO_COMMON[@]}" copy --src-creds "$USER_PASS" \
		--src-cert-dir "$WORK/skopeo-certs" "docker://$1" "dir:$dir" || return 1
	local layer=$dir/${HA_DIGEST#sha256:}
	[[ -s $layer ]] || {
		echo "no layer file in $dir"
		return 1
	}
	[[ $(sha256sum "$layer" | cut -d' ' -f1) == "${HA_DIGEST#sha256:}" ]] || {
		echo "the layer's digest does not verify"
		return 1
	}
}

ha_upstreams_table() {
	local t
	t=$(curl -fsS "http://$HA_METRICS/upstreams") || return 1
	echo "$t"
	[[ $(grep -c '"state": "writable"' <<<"$t") == 3 ]] && curl -fsS "http://$HA_METRICS/readyz?writable"
}

ha_steps() {
	log "==== HA: three fixture nodes behind nexmux on :$HA_PORT"
	step "HA: start a 3-node fixture and nexmux with three --upstream nodes" ha_start || {
		skip "HA push/pull with a node killed" "set-up failed"
		return 0
	}
	step "HA: /upstreams lists three writable nodes, /readyz?writable" ha_upstreams_table || true
	step "HA: docker login $HA_NAME:$HA_PORT" docker_login "$HA_NAME:$HA_PORT" || true
	local ref=$HA_NAME:$HA_PORT/e2e/ha:1 id
	id=$(make_image "$ref" 48 2>"$WORK/logs/import-ha.log") || true
	if step "HA: docker push $ref with the upload's node killed mid-push" ha_push_kill "$ref"; then
		step "HA: docker rmi the HA image" remove_image "$id" || true
		step "HA: docker pull $ref with the layer's node killed mid-blob (resumed)" \
			ha_pull_kill "$ref" "$id" || true
		step "HA: skopeo copy $ref with the layer's node killed mid-blob (resumed)" \
			ha_skopeo_kill "$ref" || true
	else
		skip "HA: docker pull with a node killed mid-pull" "push failed"
	fi
}
