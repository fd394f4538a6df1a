#!/usr/bin/env bash
# Code generation for the API contract in proto/ (buf + local plugins only;
# no network access, no BSR).
#
# Usage:
#   scripts/proto.sh gen      lint, then regenerate Go, gRPC, gateway and OpenAPI code in place
#   scripts/proto.sh verify   fail when proto files are unformatted, lint fails, or the
#                             checked-in generated code differs from a fresh generation
#   scripts/proto.sh lint     buf lint + buf format check only
#   scripts/proto.sh fmt      rewrite proto files with buf format
#
# Generation always goes to a temporary directory first; `gen` then replaces
# the generated files in the tree (removing stale ones), `verify` compares.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROTO_DIR=$ROOT/proto
# Our own proto sources; third_party/ is vendored and neither linted nor generated.
SRC=drplane
# Scratch directory of the running command, removed on exit.
WORK=

"$ROOT/scripts/tools.sh" ensure
PATH="$("$ROOT/scripts/tools.sh" dir):$PATH"
export PATH

# list_generated DIR prints, relative to DIR, every generated file under it.
list_generated() {
	(
		cd "$1"
		{
			[[ -d $SRC ]] && find "$SRC" -type f \( -name '*.pb.go' -o -name '*.pb.gw.go' \)
			[[ -d openapi ]] && find openapi -type f -name '*.swagger.json'
		} | LC_ALL=C sort
	)
}

# copy_generated FROM TO copies the generated files of FROM into TO.
copy_generated() {
	local f
	list_generated "$1" | while IFS= read -r f; do
		mkdir -p "$2/$(dirname "$f")"
		cp "$1/$f" "$2/$f"
	done
}

# generate_into DIR runs buf generate with DIR as the output base.
generate_into() {
	(cd "$PROTO_DIR" && buf generate --template buf.gen.yaml -o "$1")
}

cmd_lint() {
	cd "$PROTO_DIR"
	buf lint --path "$SRC"
	buf format --diff --exit-code --path "$SRC"
}

cmd_fmt() {
	cd "$PROTO_DIR"
	buf format --write --path "$SRC"
}

cmd_gen() {
	cmd_lint
	local f
	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' EXIT
	generate_into "$WORK"
	list_generated "$PROTO_DIR" | while IFS= read -r f; do
		rm -f "$PROTO_DIR/$f"
	done
	copy_generated "$WORK" "$PROTO_DIR"
	echo "proto: generated $(list_generated "$PROTO_DIR" | wc -l) files" >&2
}

cmd_verify() {
	cmd_lint
	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' EXIT
	mkdir -p "$WORK/fresh" "$WORK/tree"
	generate_into "$WORK/fresh"
	copy_generated "$PROTO_DIR" "$WORK/tree"
	if ! diff -r -u "$WORK/tree" "$WORK/fresh"; then
		echo "proto: generated code is stale; run scripts/proto.sh gen (make proto)" >&2
		exit 1
	fi
	echo "proto: generated code is up to date" >&2
}

case ${1:-} in
gen) cmd_gen ;;
verify) cmd_verify ;;
lint) cmd_lint ;;
fmt) cmd_fmt ;;
*)
	echo "usage: $0 gen|verify|lint|fmt" >&2
	exit 2
	;;
esac
