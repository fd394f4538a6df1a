#!/usr/bin/env bash
# Tidies every module of the workspace on its own (GOWORK=off).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for mod in $("$ROOT/scripts/modules.sh"); do
	echo "tidy: $mod"
	(cd "$ROOT/$mod" && GOWORK=off go mod tidy)
done
