#!/usr/bin/env bash
# nexmux-iptables.sh apply|delete [nexmux flags...]
#
# Installs or removes the nat REDIRECT rules that move Nexus's legacy
# connector ports onto nexmux's --listen port, for IPv4 (iptables) and IPv6
# (ip6tables). Meant for an init container (with NET_ADMIN in the pod's
# network namespace) or a host service started before nexmux.
#
#   apply   load `nexmux iptables [flags]` with <family>-restore --noflush.
#           The ruleset declares nexmux's chain, which flushes it, so the
#           chain's content is replaced in one transaction; the PREROUTING and
#           OUTPUT jumps are only added when missing. Applying twice leaves
#           exactly one copy of every rule.
#   delete  load `nexmux iptables --delete [flags]`: the two jumps, then the
#           chain. Only rules nexmux wrote are touched; nothing happens when
#           the chain does not exist.
#
# The flags are nexmux's own (--listen, --port, --config, --chain, ...), and
# so are its NEXMUX_* environment variables: the rules are always those of
# the configuration nexmux serves. Examples:
#
#   nexmux-iptables.sh apply --listen :8443 --port 8082=team-a --port 8083=team-a-hosted
#   nexmux-iptables.sh apply --config /etc/nexmux/nexmux.yaml --chain NEXMUX_B
#   nexmux-iptables.sh delete --chain NEXMUX_B
#
# Environment:
#   NEXMUX           the nexmux binary (default: nexmux on PATH)
#   NEXMUX_FAMILIES  which families to handle (default: "iptables ip6tables");
#                    e.g. "iptables" on a host booted with ipv6.disable=1.
#                    A family whose <family>-restore binary is missing is
#                    skipped with a message.
#
# Exit status: 0 on success, 2 on a usage error, otherwise the status of the
# first command that failed (nothing more is changed after a failure; each
# family's change is one iptables-restore transaction).
set -euo pipefail

prog=${0##*/}
NEXMUX=${NEXMUX:-nexmux}
FAMILIES=${NEXMUX_FAMILIES:-iptables ip6tables}
COMMENT=nexmux # iptables.Comment

say() { printf '%s: %s\n' "$prog" "$*" >&2; }

usage() {
	say "usage: $prog apply|delete [nexmux flags...]"
	exit 2
}

[[ $# -ge 1 ]] || usage
action=$1
shift
case $action in
apply | delete) ;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*) usage ;;
esac

# The chain name, for checking what exists: taken from --chain (the same
# flag is passed on to nexmux, which validates it).
CHAIN=NEXMUX # iptables.DefaultChain
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case ${args[i]} in
	--chain=* | -chain=*) CHAIN=${args[i]#*=} ;;
	--chain | -chain)
		if ((i + 1 < ${#args[@]})); then
			CHAIN=${args[i + 1]}
		fi
		;;
	esac
done

if ! command -v "$NEXMUX" >/dev/null 2>&1; then
	say "nexmux binary not found: $NEXMUX (set NEXMUX=/path/to/nexmux)"
	exit 1
fi

# The jumps exactly as `nexmux iptables` writes them (iptables.Rules.Apply).
pre_jump=(PREROUTING -p tcp -m addrtype --dst-type LOCAL -m comment --comment "$COMMENT" -j "$CHAIN")
out_jump=(OUTPUT -p tcp -m addrtype --dst-type LOCAL -m comment --comment "$COMMENT" -j "$CHAIN")

# has FAM RULE...: is this exact rule in the nat table? (-C exits 1 when the
# rule is absent and 2 when the chain it jumps to does not exist: both mean
# "absent" here.)
has() {
	local fam=$1
	shift
	"$fam" -w -t nat -C "$@" >/dev/null 2>&1
}

# drop LINE: copy stdin to stdout without that exact line.
drop() { grep -vxF -- "$1" || [[ $? -eq 1 ]]; }

# restore FAM RULES: load RULES in one transaction.
restore() {
	local fam=$1 rules=$2
	if ! printf '%s\n' "$rules" | "$fam-restore" -w --noflush; then
		say "$fam: $fam-restore --noflush failed; rules were:"
		printf '%s\n' "$rules" | sed 's/^/    /' >&2
		return 1
	fi
}

handled=0
for fam in $FAMILIES; do
	case $fam in
	iptables | ip6tables) ;;
	*)
		say "unknown family in NEXMUX_FAMILIES: $fam (want iptables and/or ip6tables)"
		exit 2
		;;
	esac
	if ! command -v "$fam-restore" >/dev/null 2>&1 || ! command -v "$fam" >/dev/null 2>&1; then
		say "$fam: $fam-restore (or $fam) not found; skipping this family"
		continue
	fi
	# A nat table that cannot be read (no kernel support, no NET_ADMIN) is
	# an error, not a reason to skip silently.
	if ! err=$("$fam" -w -t nat -S PREROUTING 2>&1 >/dev/null); then
		say "$fam: cannot read the nat table: $err"
		exit 1
	fi
	handled=$((handled + 1))

	have_pre=no have_out=no
	has "$fam" "${pre_jump[@]}" && have_pre=yes
	has "$fam" "${out_jump[@]}" && have_out=yes

	case $action in
	apply)
		if [[ $have_pre == yes && $have_out == yes ]]; then
			rules=$("$NEXMUX" iptables --jumps=false "$@")
		else
			# Both jumps, minus one already present (a half-removed
			# installation), so no jump is ever duplicated.
			rules=$("$NEXMUX" iptables "$@")
			if [[ $have_pre == yes ]]; then
				rules=$(printf '%s\n' "$rules" | drop "-A ${pre_jump[*]}")
			fi
			if [[ $have_out == yes ]]; then
				rules=$(printf '%s\n' "$rules" | drop "-A ${out_jump[*]}")
			fi
		fi
		restore "$fam" "$rules"
		say "$fam: applied (chain $CHAIN)"
		;;
	delete)
		if ! "$fam" -w -t nat -S "$CHAIN" >/dev/null 2>&1; then
			say "$fam: chain $CHAIN does not exist; nothing to delete"
			continue
		fi
		rules=$("$NEXMUX" iptables --delete "$@")
		# -D of a rule that is not there fails the whole transaction:
		# leave out the jumps that are already gone.
		if [[ $have_pre == no ]]; then
			rules=$(printf '%s\n' "$rules" | drop "-D ${pre_jump[*]}")
		fi
		if [[ $have_out == no ]]; then
			rules=$(printf '%s\n' "$rules" | drop "-D ${out_jump[*]}")
		fi
		restore "$fam" "$rules"
		say "$fam: deleted (chain $CHAIN)"
		;;
	esac
done

if ((handled == 0)); then
	say "no iptables family available (NEXMUX_FAMILIES=\"$FAMILIES\")"
	exit 1
fi
