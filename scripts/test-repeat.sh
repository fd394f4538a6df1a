#!/usr/bin/env bash
# Runs a make target (default: test) N times in a row and prints a table of
# the failures per package and test, so a flaky test can be hunted and the
# hunt reproduced. Usage: scripts/test-repeat.sh N [target] (or
# make test-repeat N=10 [TARGET=test]).
#
# Each run's full output is kept in .test-repeat/<start time>/run-<i>.log.
# Every run gets its own TMPDIR under that directory, so after it the script
# can tell this run's leftovers (a mariadbd or Elasticsearch node still
# running on one of its data directories) from other processes on the
# machine; leftovers are reported and make the run count as failed.
#
# Failures are read from go test's plain output: the "--- FAIL: Name" lines
# of a package are attributed to the "FAIL <package>" line that follows
# them (go test prints each package's output in one piece); a package that
# fails without a failing test (build error, panic, timeout) is listed as
# "(package)", with the tests a timeout names. A run that fails outside go
# test (a dependency, the Elasticsearch node) is listed as "(make <target>)".
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-${N:-10}}
TARGET=${2:-${TARGET:-test}}
MAKE=${MAKE:-make}
if ! [[ $N =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 N [make target]  (N a positive number of runs)" >&2
	exit 2
fi
dir=$ROOT/.test-repeat/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$dir"
failures=$dir/failures.tsv # run <TAB> package <TAB> test
runs=$dir/runs.tsv         # run <TAB> result <TAB> seconds
: >"$failures"
: >"$runs"

# parse prints "package<TAB>test" for every failure in a go test log.
parse() {
	awk '
	function flush(pkg,   i, n, parent, child, leaf) {
		n = 0
		for (i = 1; i <= npend; i++) {
			# A parent test fails when a subtest does: keep the subtest only.
			leaf = 1
			for (child = 1; child <= npend; child++) {
				if (index(pend[child], pend[i] "/") == 1) { leaf = 0; break }
			}
			if (leaf) { print pkg "\t" pend[i]; n++ }
		}
		for (i = 1; i <= ntimeout; i++) { print pkg "\t" timedout[i] " (timed out)"; n++ }
		if (n == 0) print pkg "\t(package)"
		npend = 0; ntimeout = 0; intimeout = 0
	}
	/^[ \t]*--- FAIL: / { name = $3; if (!(name in seen)) { pend[++npend] = name }; seen[name] = 1; next }
	/^panic: test timed out/ { intimeout = 1; next }
	intimeout && /^running tests:/ { next }
	intimeout && /^[ \t]+Test[^ ]* \(/ { timedout[++ntimeout] = $1; next }
	intimeout && /^$/ { intimeout = 0; next }
	/^FAIL[ \t]+[^ \t]+/ && $2 != "" { flush($2); delete seen; next }
	/^ok[ \t]/ { npend = 0; ntimeout = 0; intimeout = 0; delete seen }
	' "$1"
}

# leftovers prints the processes still running on this run's TMPDIR.
leftovers() {
	pgrep -af -- "$1" | grep -v -e "pgrep" -e "test-repeat" || true
}

echo "test-repeat: $N × make $TARGET; logs in $dir"
for i in $(seq 1 "$N"); do
	log=$dir/run-$i.log
	tmp=$dir/tmp-$i
	mkdir -p "$tmp"
	start=$(date +%s)
	(cd "$ROOT" && TMPDIR=$tmp $MAKE "$TARGET") >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	parse "$log" | sed "s/^/$i\t/" >>"$failures"
	left=$(leftovers "$tmp")
	result=ok
	if [ $rc -ne 0 ]; then
		result=FAIL
		if ! grep -q "^$i	" "$failures"; then
			printf '%s\t(make %s)\texit %s\n' "$i" "$TARGET" "$rc" >>"$failures"
		fi
	fi
	if [ -n "$left" ]; then
		result=FAIL
		printf '%s\t(leftovers)\t%s\n' "$i" "$(echo "$left" | awk '{print $2}' | sort | uniq -c | xargs)" >>"$failures"
		echo "$left" >"$dir/leftovers-$i.txt"
	fi
	printf '%s\t%s\t%s\n' "$i" "$result" "$secs" >>"$runs"
	echo "test-repeat: run $i/$N: $result in ${secs}s"
	# The run's data directories: kept when something is left running on them.
	[ -z "$left" ] && rm -rf "$tmp"
done

echo
echo "runs: $N × make $TARGET ($(awk -F'\t' '$2 == "ok"' "$runs" | wc -l) green), wall time per run (s): $(cut -f3 "$runs" | xargs)"
if [ ! -s "$failures" ]; then
	echo "no failures"
	exit 0
fi
echo
printf '| %-40s | %-60s | %-8s | %s\n' package test failures runs
printf '|%s|%s|%s|%s\n' "$(printf -- '-%.0s' {1..42})" "$(printf -- '-%.0s' {1..62})" "----------" "------"
awk -F'\t' -v n="$N" '
	{ key = $2 "\t" $3; count[key]++; which[key] = which[key] (which[key] == "" ? "" : ",") $1 }
	END { for (k in count) { split(k, f, "\t"); printf "| %-40s | %-60s | %3d/%-4d | %s\n", f[1], f[2], count[k], n, which[k] } }
' "$failures" | sort -t'|' -k4,4r
exit 1
