# Sourced by e2e.sh: what the running nexus-fixture does, asked of the
# fixture itself. Its flags are not read: Go's flag package takes
# -force-basic-auth, --force-basic-auth, -force-basic-auth=1 and
# -force-basic-auth=false, the last of several winning.

FORCE_BASIC=""

# probe_fixture BASE_URL: team-a's challenge to a failed login (never let
# through, unlike no credentials with -anonymous) says whether the fixture
# forces basic auth: Nexus's BASIC challenge, or a Bearer realm.
probe_fixture() {
	local hdrs
	hdrs=$(curl -sS -o /dev/null -D - --max-time 10 -u nexmux-e2e-probe:wrong \
		"$1/repository/team-a/v2/" | tr -d '\r') || return 1
	if grep -qi '^www-authenticate: *basic ' <<<"$hdrs"; then
		FORCE_BASIC=yes
	elif grep -qi '^www-authenticate: *bearer ' <<<"$hdrs"; then
		FORCE_BASIC=no
	else
		echo "no Basic or Bearer challenge from $1/repository/team-a/v2/:"
		echo "$hdrs"
		return 1
	fi
}

# force_basic: the fixture runs the force-basic-auth variant (probe_fixture
# must have run).
force_basic() {
	[[ -n $FORCE_BASIC ]] || {
		echo "force_basic: probe_fixture has not run" >&2
		exit 1
	}
	[[ $FORCE_BASIC == yes ]]
}
