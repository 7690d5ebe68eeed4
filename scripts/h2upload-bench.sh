#!/usr/bin/env bash
# HTTP/2 blob push through nexmux with the server offering 16 KiB, 64 KiB,
# 256 KiB and 1 MiB frames (internal/daemon BenchmarkHTTP2Upload), in
# interleaved rounds: each round runs every frame size once, every other
# round in reverse order, one short process each, under the lock the other
# heavy runs on the machine take. Prints the raw benchmark lines, then per
# frame size the median and the range of the rounds.
#
#   ROUNDS=7 UPLOAD_BYTES=$((512<<20)) OPS=3 bash scripts/h2upload-bench.sh
#
# Results: docs/bench/h2-upload.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
OPS=${OPS:-3}
UPLOAD_BYTES=${UPLOAD_BYTES:-$((512 << 20))}
LOCK=${LOCK:-/tmp/nexmux-e2e.lock}
SIZES=(16K 64K 256K 1M)

bin=$(mktemp -d)/daemon.test
out=$(mktemp)
trap 'rm -rf "$(dirname "$bin")" "$out"' EXIT
go test -c -o "$bin" ./internal/daemon

for ((r = 1; r <= ROUNDS; r++)); do
	order=("${SIZES[@]}")
	if ((r % 2 == 0)); then
		order=()
		for ((i = ${#SIZES[@]} - 1; i >= 0; i--)); do order+=("${SIZES[i]}"); done
	fi
	for s in "${order[@]}"; do
		(cd internal/daemon && BENCH_H2_UPLOAD_BYTES=$UPLOAD_BYTES flock "$LOCK" "$bin" \
			-test.run '^$' -test.bench "^BenchmarkHTTP2Upload/frame=$s\$" -test.benchtime "${OPS}x") |
			grep '^BenchmarkHTTP2Upload' | tee -a "$out"
	done
done

echo
echo "median [min-max] of $ROUNDS rounds, $OPS uploads of $UPLOAD_BYTES bytes each"
awk '
{
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkHTTP2Upload\//, "", name)
	if (!(name in seen)) { seen[name] = 1; names[++nn] = name }
	for (i = 3; i < NF; i += 2) {
		unit = $(i + 1)
		if (unit == "ns/op" || unit == "MB/s") continue
		if (!((name, unit) in cnt)) { if (!(unit in useen)) { useen[unit] = 1; units[++nu] = unit } }
		v[name, unit, ++cnt[name, unit]] = $i
	}
}
function median(name, unit,   n, i, j, a, t) {
	n = cnt[name, unit]
	for (i = 1; i <= n; i++) a[i] = v[name, unit, i]
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	lo = a[1]; hi = a[n]
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	for (k = 1; k <= nn; k++) {
		line = sprintf("%-11s", names[k])
		for (u = 1; u <= nu; u++) {
			m = median(names[k], units[u])
			line = line sprintf("  %s %.3g [%.3g-%.3g]", units[u], m, lo, hi)
		}
		print line
	}
}' "$out"
