#!/usr/bin/env bash
# es-node.sh — run one throwaway Elasticsearch 8 node on loopback, for tests.
#
# The node comes from Maven Central: the artifact
# org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip is
# Elasticsearch's own minimal distribution (the server, Lucene and the modules
# transport-netty4, x-pack-core, x-pack-security and apm; no bundled JDK, no
# analysis-common, painless or rest-root, so `GET /` answers 405). It runs on
# the JDK found through ES_JAVA_HOME, JAVA_HOME or `java` on PATH (17 or newer).
#
# What it does:
#   1. fetches the zip with mvn into the cache directory and unpacks it there
#      (once; later runs reuse it, concurrent runs wait on a lock);
#   2. starts a single-node cluster with security off, bound to 127.0.0.1 on
#      free HTTP and transport ports (chosen by the kernel), with its data, logs
#      and config in a fresh temporary directory;
#   3. when the cluster answers, prints its URL (http://127.0.0.1:PORT) as the
#      only line on stdout and, if ES_NODE_URL_FILE is set, writes it there;
#   4. stays in the foreground until SIGTERM or SIGINT, then stops the node and
#      removes the temporary directory. If the node dies, it exits non-zero
#      and prints the end of the node's log.
# Progress and timings go to stderr. Elasticsearch refuses to run as root: as
# root the node runs as ES_NODE_USER (default nobody) through setpriv.
#
# Example:
#   scripts/es-node.sh > es.url &  # or ES_NODE_URL_FILE=es.url scripts/es-node.sh &
#   ... wait for es.url to be non-empty ...
#   cd pkg && DRPLANE_TEST_ES_URL=$(cat ../es.url) go test -count=1 ./docstore/es/
#   kill -TERM %1
#
# Environment:
#   ES_NODE_VERSION        Elasticsearch version (default 8.19.21)
#   ES_NODE_CACHE          artifact cache (default /var/cache/drplane/es as root,
#                          else ${XDG_CACHE_HOME:-~/.cache}/drplane/es)
#   ES_NODE_HEAP           JVM heap, -Xms = -Xmx (default 256m)
#   ES_NODE_READY_TIMEOUT  seconds to wait for the node to answer (default 600: a node that exits is seen at once, a live one is slow to start on a loaded 2-core machine — 120 s was seen to be too little there)
#   ES_NODE_STOP_TIMEOUT   seconds to wait for it to stop before SIGKILL (default 30)
#   ES_NODE_URL_FILE       file to write the URL to once ready (removed on exit)
#   ES_NODE_USER           user to run as when started as root (default nobody)
#   ES_NODE_KEEP           set to 1 to keep the temporary directory on exit
set -euo pipefail

VERSION=${ES_NODE_VERSION:-8.19.21}
HEAP=${ES_NODE_HEAP:-256m}
READY_TIMEOUT=${ES_NODE_READY_TIMEOUT:-600}
STOP_TIMEOUT=${ES_NODE_STOP_TIMEOUT:-30}
URL_FILE=${ES_NODE_URL_FILE:-}
RUN_USER=${ES_NODE_USER:-nobody}
if [[ -n ${ES_NODE_CACHE:-} ]]; then
	CACHE=$ES_NODE_CACHE
elif [[ $EUID -eq 0 ]]; then
	CACHE=/var/cache/drplane/es
else
	CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/drplane/es
fi
ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$VERSION:zip
ES_HOME=$CACHE/elasticsearch-$VERSION

log() { echo "es-node: $*" >&2; }
die() {
	log "$*"
	exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for tool in mvn unzip curl flock setsid; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done

# The JDK: Elasticsearch's launcher ignores JAVA_HOME without ES_JAVA_HOME.
if [[ -z ${ES_JAVA_HOME:-} ]]; then
	if [[ -n ${JAVA_HOME:-} ]]; then
		ES_JAVA_HOME=$JAVA_HOME
	else
		java_bin=$(command -v java) || die "no java on PATH; set ES_JAVA_HOME"
		ES_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$java_bin")")")
	fi
fi
[[ -x $ES_JAVA_HOME/bin/java ]] || die "no java at $ES_JAVA_HOME/bin/java"
export ES_JAVA_HOME

# 1. Fetch and unpack once.
mkdir -p "$CACHE"
chmod 755 "$CACHE"
fetch_start=$(now)
(
	flock 9
	if [[ -f $ES_HOME/.complete ]]; then
		exit 0
	fi
	log "fetching $ARTIFACT into $CACHE"
	mvn -q -B -Dstyle.color=never dependency:get -Dmaven.repo.local="$CACHE/m2" \
		-Dartifact="$ARTIFACT" -Dtransitive=false >&2
	zip=$CACHE/m2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$VERSION/elasticsearch-$VERSION.zip
	[[ -f $zip ]] || die "mvn did not leave $zip"
	rm -rf "$ES_HOME" "$CACHE/unpack"
	unzip -q "$zip" -d "$CACHE/unpack"
	mv "$CACHE/unpack/elasticsearch-$VERSION" "$ES_HOME"
	rmdir "$CACHE/unpack"
	chmod -R a+rX "$ES_HOME"
	touch "$ES_HOME/.complete"
	log "unpacked $ES_HOME in $(since "$fetch_start")s"
) 9>"$CACHE/.lock"

# 2. A fresh node directory.
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/es-node.XXXXXX")
ES_PID=
SERVER_PID=
URL=

# shellcheck disable=SC2317 # run by the EXIT trap
stop() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $ES_PID ]] && kill -0 "$ES_PID" 2>/dev/null; then
		local stop_start deadline
		stop_start=$(now)
		kill -TERM "$ES_PID" 2>/dev/null || true
		deadline=$((SECONDS + STOP_TIMEOUT))
		# The launcher exits first; the server JVM is its child.
		while { kill -0 "$ES_PID" || { [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID"; }; } 2>/dev/null &&
			((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "$ES_PID" 2>/dev/null || { [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; }; then
			log "node did not stop in ${STOP_TIMEOUT}s; killing its process group"
			kill -KILL -- "-$ES_PID" 2>/dev/null || true
		fi
		wait "$ES_PID" 2>/dev/null || true
		log "stopped in $(since "$stop_start")s"
	fi
	if [[ -n $URL_FILE && -n $URL ]]; then
		rm -f "$URL_FILE"
	fi
	if [[ ${ES_NODE_KEEP:-0} == 1 ]]; then
		log "kept $RUN_DIR"
	else
		rm -rf "$RUN_DIR"
	fi
	exit "$rc"
}
trap stop EXIT
trap 'exit 0' INT TERM

mkdir -p "$RUN_DIR/config/jvm.options.d" "$RUN_DIR/data" "$RUN_DIR/logs" "$RUN_DIR/tmp"
cp "$ES_HOME/config/jvm.options" "$ES_HOME/config/log4j2.properties" "$RUN_DIR/config/"
cat >"$RUN_DIR/config/elasticsearch.yml" <<EOF
cluster.name: es-node
node.name: es-node
discovery.type: single-node
network.host: 127.0.0.1
http.port: 0
transport.port: 0
node.portsfile: true
path.data: $RUN_DIR/data
path.logs: $RUN_DIR/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
EOF
printf -- '-Xms%s\n-Xmx%s\n' "$HEAP" "$HEAP" >"$RUN_DIR/config/jvm.options.d/heap.options"

launch=("$ES_HOME/bin/elasticsearch")
if [[ $EUID -eq 0 ]]; then
	command -v setpriv >/dev/null || die "running as root needs setpriv (util-linux)"
	uid=$(id -u "$RUN_USER") || die "no user $RUN_USER"
	gid=$(id -g "$RUN_USER")
	chmod 755 "$RUN_DIR"
	chown -R "$uid:$gid" "$RUN_DIR"
	setpriv --reuid="$uid" --regid="$gid" --clear-groups test -r "$ES_HOME/lib/elasticsearch-$VERSION.jar" ||
		die "$RUN_USER cannot read $ES_HOME; put ES_NODE_CACHE where it can"
	launch=(setpriv --reuid="$uid" --regid="$gid" --clear-groups "${launch[@]}")
fi

start=$(now)
ES_PATH_CONF=$RUN_DIR/config ES_TMPDIR=$RUN_DIR/tmp \
	setsid "${launch[@]}" >"$RUN_DIR/logs/console.log" 2>&1 </dev/null &
ES_PID=$!
log "starting Elasticsearch $VERSION (pid $ES_PID, heap $HEAP, dir $RUN_DIR)"

failed() {
	log "$*"
	tail -n 40 "$RUN_DIR/logs/console.log" >&2 || true
	exit 1
}

# 3. Wait until the HTTP port is known and the cluster answers.
deadline=$((SECONDS + READY_TIMEOUT))
while :; do
	kill -0 "$ES_PID" 2>/dev/null || failed "node exited during start-up"
	((SECONDS < deadline)) || failed "node not ready after ${READY_TIMEOUT}s"
	if [[ -z $URL && -s $RUN_DIR/logs/http.ports ]]; then
		URL=http://$(head -n 1 "$RUN_DIR/logs/http.ports")
	fi
	if [[ -n $URL ]] && curl -fsS -m 2 -o /dev/null "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null; then
		break
	fi
	sleep 0.2
done
SERVER_PID=$(pgrep -P "$ES_PID" java 2>/dev/null | head -n 1 || true)
rss=
if [[ -n $SERVER_PID && -r /proc/$SERVER_PID/status ]]; then
	rss=", server JVM RSS $(awk '/^VmRSS/ { printf "%d MiB", $2 / 1024 }' "/proc/$SERVER_PID/status")"
fi
log "ready at $URL in $(since "$start")s$rss"
if [[ -n $URL_FILE ]]; then
	echo "$URL" >"$URL_FILE.tmp"
	mv "$URL_FILE.tmp" "$URL_FILE"
fi
echo "$URL"

# 4. Run until told to stop (the trap) or until the node dies.
set +e
wait "$ES_PID"
rc=$?
set -e
ES_PID=
failed "node exited on its own (status $rc)"
