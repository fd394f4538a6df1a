#!/usr/bin/env bash
# Pinned developer tools, installed with `go install` into .tools/ at the repo
# root (gitignored). This file is the single list of tool versions.
#
# Usage:
#   scripts/tools.sh install   install every tool (re)building it at its pin
#   scripts/tools.sh ensure    install only tools that are missing or at another version
#   scripts/tools.sh list      print the pinned tools
#   scripts/tools.sh dir       print the tools directory (prepend it to PATH)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}

# <binary> <package>@<version>
TOOLS=(
	"buf github.com/bufbuild/buf/cmd/buf@v1.75.0"
	"protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
	"protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0"
	"protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.32.0"
	"protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.32.0"
	"golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.8.0"
)

# installed_version BIN prints the main-module version a binary was built
# from, or nothing when it is missing.
installed_version() {
	local bin=$TOOLS_DIR/$1
	[[ -x $bin ]] || return 0
	go version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

install_one() {
	local pkg=$1
	echo "tools: go install $pkg" >&2
	(cd "$ROOT" && GOWORK=off GOBIN=$TOOLS_DIR go install "$pkg")
}

cmd_install() {
	mkdir -p "$TOOLS_DIR"
	local entry
	for entry in "${TOOLS[@]}"; do
		install_one "${entry#* }"
	done
}

cmd_ensure() {
	mkdir -p "$TOOLS_DIR"
	local entry bin pkg want have
	for entry in "${TOOLS[@]}"; do
		bin=${entry%% *}
		pkg=${entry#* }
		want=${pkg##*@}
		have=$(installed_version "$bin")
		if [[ $have != "$want" ]]; then
			install_one "$pkg"
		fi
	done
}

cmd_list() {
	local entry
	for entry in "${TOOLS[@]}"; do
		echo "${entry#* }"
	done
}

case ${1:-} in
install) cmd_install ;;
ensure) cmd_ensure ;;
list) cmd_list ;;
dir) echo "$TOOLS_DIR" ;;
*)
	echo "usage: $0 install|ensure|list|dir" >&2
	exit 2
	;;
esac
