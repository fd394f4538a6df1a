#!/usr/bin/env bash
# Fails when any module's go.mod/go.sum is not tidy. Each module must also
# build on its own (GOWORK=off), with replace directives for its sibling
# modules, so that tidiness is checked per module. deploy/charttest is a
# module outside go.work (its Helm dependencies need a newer etcd than the
# workspace pins); it is checked the same way.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXTRA_MODULES="deploy/charttest"
status=0
for mod in $("$ROOT/scripts/modules.sh") $EXTRA_MODULES; do
	if ! out=$(cd "$ROOT/$mod" && GOWORK=off go mod tidy -diff 2>&1); then
		echo "verify-mod: $mod is not tidy (run: cd $mod && GOWORK=off go mod tidy)"
		echo "$out" | head -40
		status=1
	fi
done
exit $status
