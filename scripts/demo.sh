#!/usr/bin/env bash
# make demo: the whole product on this machine, as a new user would see it.
# Starts the agent on the built-in demo target (an SGLang-compatible toy server with two
# rank workers) under nsys, opens and closes two capture windows with the CLI, pulls the
# reports, and stops everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/nsys-agent
[ -x "$bin" ] || { echo "demo: $bin is missing; run 'make build'" >&2; exit 1; }

work=${DEMO_DIR:-$PWD/demo-output}
rm -rf "$work"; mkdir -p "$work"
data=$work/agent-data
ready=$work/agent.url
log=$work/agent.log

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "starting the agent on the demo target (log: $log)"
"$bin" run --listen 127.0.0.1:0 --data-dir "$data" --ready-file "$ready" --demo-ranks 2 >"$log" 2>&1 &
agent=$!
cleanup() {
  if kill -0 "$agent" 2>/dev/null; then
    kill -INT "$agent"; wait "$agent" || true
  fi
}
trap cleanup EXIT
for _ in $(seq 1 240); do
  [ -s "$ready" ] && break
  kill -0 "$agent" 2>/dev/null || { echo "demo: the agent exited; its log:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.5
done
[ -s "$ready" ] || { echo "demo: the agent did not come up within 2 minutes; its log:" >&2; cat "$log" >&2; exit 1; }
export NSYS_AGENT_ADDR=$(cat "$ready")
echo "agent at $NSYS_AGENT_ADDR"
"$bin" status

step "window 1: open, let the ranks work for 2 s, close (the bar follows finalizing)"
"$bin" start --name first
sleep 2
"$bin" stop

step "window 2: auto-stops after 2 s, exported to SQLite too"
w2=$("$bin" start --name second --duration 2s --export -o json | sed -n 's/^ *"id": "\(.*\)",$/\1/p' | head -n1)
sleep 2.5
for _ in $(seq 1 120); do
  state=$("$bin" show "$w2" -o json | sed -n 's/^  "state": "\(.*\)",$/\1/p')
  [ "$state" = ready ] || [ "$state" = failed ] && break
  sleep 0.5
done
"$bin" show "$w2"

step "all windows"
"$bin" windows

step "pulling the reports (sha256-verified)"
for w in $("$bin" windows -o json | sed -n 's/^    "id": "\(.*\)",$/\1/p'); do
  "$bin" pull "$w" --dir "$work/reports"
done

step "stopping the agent (Ctrl-C does the same: open windows are finished first)"
cleanup
trap - EXIT
tail -n 3 "$log"

step "done"
echo "Reports:"
find "$work/reports" -name '*.nsys-rep' -o -name '*.sqlite' | sort | sed 's/^/  /'
cat <<TXT

Open a report:
  - in the Nsight Systems GUI:    nsys-ui <report>.nsys-rep   (or copy it to your desktop)
  - summaries in the terminal:    nsys stats <report>.nsys-rep
  - the SQLite export with any SQLite client: its OSRT_API table holds the rank workers'
    CPU (OS runtime) calls; on a GPU server CUPTI_ACTIVITY_KIND_KERNEL holds the kernels.
Reports embed the target's environment: treat them as secrets.

Next: run your own server with  bin/nsys-agent run -- <your server command>
TXT
