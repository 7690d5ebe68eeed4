#!/usr/bin/env bash
# nexmux-iptables.sh apply|delete [nexmux flags...]
#
# Installs or removes the nat REDIRECT rules that move Nexus's legacy
# connector ports onto nexmux's --listen port, for IPv4 and IPv6. Meant for
# an init container (with NET_ADMIN in the pod's network namespace) or a
# host service started before nexmux. The work is nexmux's own:
#
#   apply   nexmux iptables --load --delete=false [flags]  (idempotent; a
#           "delete: true" in a shared --config file does not turn it round)
#   delete  nexmux iptables --load --delete [flags]  (only nexmux's rules)
#
# The flags are nexmux's (--listen, --port, --config, --chain, --families),
# and so are its NEXMUX_* environment variables. Examples:
#
#   nexmux-iptables.sh apply --listen :8443 --port 8082=team-a --port 8083=team-a-hosted
#   nexmux-iptables.sh apply --config /etc/nexmux/nexmux.yaml --chain NEXMUX_B
#   nexmux-iptables.sh delete --chain NEXMUX_B
#
# Environment:
#   NEXMUX           the nexmux binary (default: nexmux on PATH)
#   NEXMUX_FAMILIES  families to handle (default: "iptables ip6tables")
#
# Exit status: 0 on success, 2 on a usage error, 1 on a failure.
set -euo pipefail

case ${1-} in
apply) shift && exec "${NEXMUX:-nexmux}" iptables --load --delete=false "$@" ;;
delete) shift && exec "${NEXMUX:-nexmux}" iptables --load --delete "$@" ;;
-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*)
	echo "usage: ${0##*/} apply|delete [nexmux flags...]" >&2
	exit 2
	;;
esac
