#!/usr/bin/env bash
# demo.sh BIN_DIR LAB_DIR — the body of `make demo`.
#
# Brings the 3-DC lab up in the background (BIN_DIR/drlab up --dir LAB_DIR),
# waits until it is ready, polls `drctl status` until every MySQL cluster
# reports HEALTH OK, prints the status table, then stops the lab with SIGTERM
# and prints its shutdown report. Exits non-zero when any step fails. The lab
# is always stopped on the way out, also on failure or Ctrl-C.
#
# Deadlines (seconds) can be changed through the environment:
#   DEMO_READY_TIMEOUT   lab.json written and "lab ready" printed (default 120)
#   DEMO_HEALTH_TIMEOUT  every cluster HEALTH OK in drctl status (default 60)
#   DEMO_STOP_TIMEOUT    drlab exits after SIGTERM (default 90)
set -euo pipefail

if [[ $# -ne 2 ]]; then
	echo "usage: $0 BIN_DIR LAB_DIR" >&2
	exit 2
fi
BIN_DIR=$1
LAB_DIR=$2
LAB_JSON=$LAB_DIR/lab.json
READY_TIMEOUT=${DEMO_READY_TIMEOUT:-120}
HEALTH_TIMEOUT=${DEMO_HEALTH_TIMEOUT:-60}
STOP_TIMEOUT=${DEMO_STOP_TIMEOUT:-90}

for b in drlab drctl coordinator haagent reship collector; do
	if [[ ! -x $BIN_DIR/$b ]]; then
		echo "demo: $BIN_DIR/$b is missing (run make build)" >&2
		exit 1
	fi
done

# drlab's output goes to a file outside LAB_DIR: drlab up clears a lab left
# behind in LAB_DIR before it starts.
LOG=$(mktemp "${TMPDIR:-/tmp}/drplane-demo.XXXXXX")
DRLAB_PID=
# Lines of LOG already printed.
PRINTED=0
OK=0

say() { printf '==> %s\n' "$*"; }

alive() { [[ -n $DRLAB_PID ]] && kill -0 "$DRLAB_PID" 2>/dev/null; }

# print_new_output prints what drlab wrote since the last call.
print_new_output() {
	local total
	total=$(wc -l <"$LOG")
	if ((total > PRINTED)); then
		sed -n "$((PRINTED + 1)),${total}s/^/  | /p" "$LOG"
		PRINTED=$total
	fi
}

# lab_pid prints the drlab pid recorded in LAB_JSON, if any.
lab_pid() {
	[[ -f $LAB_JSON ]] || return 0
	sed -n '/"drlab": {/,/}/s/^[[:space:]]*"pid": \([0-9][0-9]*\).*/\1/p' "$LAB_JSON"
}

# stop_drlab sends SIGTERM to drlab and waits for it to exit; after
# STOP_TIMEOUT it kills drlab. It returns drlab's exit status (137 when it
# had to be killed).
stop_drlab() {
	local deadline rc=0
	if alive; then
		kill -TERM "$DRLAB_PID" 2>/dev/null || true
		deadline=$((SECONDS + STOP_TIMEOUT))
		while alive && ((SECONDS < deadline)); do
			sleep 0.2
		done
		if alive; then
			echo "demo: drlab did not stop within ${STOP_TIMEOUT}s; killing it" >&2
			kill -KILL "$DRLAB_PID" 2>/dev/null || true
		fi
	fi
	wait "$DRLAB_PID" 2>/dev/null || rc=$?
	return "$rc"
}

cleanup() {
	local rc=$? stop_rc=0
	trap - EXIT INT TERM
	if [[ -n $DRLAB_PID ]]; then
		if alive; then
			say "stopping the lab"
			stop_drlab || stop_rc=$?
		fi
		print_new_output
		# drlab removes lab.json when it has stopped everything; a lab.json
		# still naming our drlab means it could not, so clean up by pid files.
		# A lab.json naming another drlab belongs to someone else: leave it.
		if [[ $(lab_pid) == "$DRLAB_PID" ]] || ((stop_rc == 137)); then
			say "falling back to drlab down --dir $LAB_DIR"
			"$BIN_DIR/drlab" down --dir "$LAB_DIR" || rc=1
		fi
	fi
	if ((OK == 1 && rc == 0)); then
		rm -f "$LOG"
	else
		echo "demo: FAILED; drlab's full output is in $LOG" >&2
		((rc != 0)) || rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting the lab: $BIN_DIR/drlab up --dir $LAB_DIR"
"$BIN_DIR/drlab" up --dir "$LAB_DIR" >"$LOG" 2>&1 &
DRLAB_PID=$!

# Wait for lab.json and the "lab ready" line.
deadline=$((SECONDS + READY_TIMEOUT))
while :; do
	if [[ -f $LAB_JSON ]] && grep -q 'lab ready' "$LOG"; then
		break
	fi
	if ! alive; then
		print_new_output
		echo "demo: drlab exited before the lab was ready" >&2
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		print_new_output
		echo "demo: the lab was not ready within ${READY_TIMEOUT}s" >&2
		exit 1
	fi
	sleep 0.5
done
say "lab is up; drlab said:"
print_new_output

# Poll drctl status until every cluster is HEALTH OK: the HA agents publish
# their first observations within about a poll interval of starting.
say "waiting until every cluster reports HEALTH OK: $BIN_DIR/drctl --lab $LAB_JSON status"
deadline=$((SECONDS + HEALTH_TIMEOUT))
tries=0
healthy=0
out=
while :; do
	tries=$((tries + 1))
	status_rc=0
	out=$("$BIN_DIR/drctl" --lab "$LAB_JSON" status 2>&1) || status_rc=$?
	if ((status_rc == 0)); then
		clusters=$(grep -c '^  cluster .*: HEALTH ' <<<"$out" || true)
		ok=$(grep -c '^  cluster .*: HEALTH OK,' <<<"$out" || true)
		if ((clusters > 0 && ok == clusters)); then
			healthy=1
			break
		fi
	fi
	if ! alive || ((SECONDS >= deadline)); then
		break
	fi
	sleep 1
done
if ((healthy == 1)); then
	say "drctl status (attempt $tries): every cluster is HEALTH OK"
	printf '%s\n' "$out"
else
	say "drctl status after $tries attempts (exit $status_rc):"
	printf '%s\n' "$out"
	if ! alive; then
		echo "demo: drlab exited while waiting for the clusters" >&2
	else
		echo "demo: not every cluster reported HEALTH OK within ${HEALTH_TIMEOUT}s" >&2
	fi
	exit 1
fi

say "stopping the lab (SIGTERM to drlab pid $DRLAB_PID)"
stop_rc=0
stop_drlab || stop_rc=$?
print_new_output
if ((stop_rc != 0)); then
	echo "demo: drlab exited with status $stop_rc" >&2
	exit 1
fi
if [[ -f $LAB_JSON ]]; then
	echo "demo: drlab exited but left $LAB_JSON behind" >&2
	exit 1
fi
DRLAB_PID=
OK=1
say "demo finished: the lab came up, every cluster was healthy, and it stopped cleanly (data left in $LAB_DIR)"
