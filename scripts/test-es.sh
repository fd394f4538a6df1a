#!/usr/bin/env bash
# Runs the Elasticsearch backends' tests against a real single-node
# Elasticsearch started by scripts/es-node.sh (from Maven Central, on the
# installed JDK): the document-store contract suite (pkg/docstore/es) and the
# coordinator's audit search on Elasticsearch. The node is stopped at exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
tmp=$(mktemp -d)
url_file=$tmp/url
ES_NODE_URL_FILE=$url_file "$ROOT/scripts/es-node.sh" >/dev/null 2>"$tmp/es.log" &
pid=$!
cleanup() {
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
start=$(date +%s)
until [ -s "$url_file" ]; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "test-es: the Elasticsearch node did not start:" >&2
		tail -n 40 "$tmp/es.log" >&2
		exit 1
	fi
	if [ $(( $(date +%s) - start )) -gt 300 ]; then
		echo "test-es: no Elasticsearch node after 300s:" >&2
		tail -n 40 "$tmp/es.log" >&2
		exit 1
	fi
	sleep 0.5
done
url=$(cat "$url_file")
echo "test-es: Elasticsearch at $url (ready in $(( $(date +%s) - start ))s)"
(cd "$ROOT/pkg" && DRPLANE_TEST_ES_URL=$url "$GO" test -count=1 ./docstore/es/)
(cd "$ROOT/services/coordinator" && DRPLANE_TEST_ES_URL=$url "$GO" test -count=1 -run 'Elasticsearch' ./internal/coordinator/)
