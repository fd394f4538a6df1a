#!/usr/bin/env bash
# Prints the directory of every module of the workspace, as go.work lists them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go work edit -json | awk -F'"' '/"DiskPath"/ {print $4}'
