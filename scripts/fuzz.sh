#!/usr/bin/env bash
# Runs every fuzz target of the workspace for a bounded time each
# (FUZZTIME, default 30s). `make test` already runs each target's seed corpus
# (testdata/fuzz/<Target>) as ordinary tests; this explores beyond it. A
# failing input is written to the package's testdata/fuzz/<Target>/ by go
# test: check it in as a new seed once the bug is fixed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
cd "$ROOT"
status=0
for mod in $(scripts/modules.sh); do
	# Each file declaring a fuzz target, as "dir target".
	while read -r file target; do
		dir=$(dirname "$file")
		echo "fuzz: $dir $target ($FUZZTIME)"
		if ! (cd "$dir" && "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" .); then
			status=1
		fi
	done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' "$mod" | sed -E 's/:func / /')
done
exit $status
