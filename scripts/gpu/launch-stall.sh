#!/usr/bin/env bash
# Reproduces the launch-mode stall of docs/gpu-validation.md ("Launch mode with a 10 s
# window under load: the server stopped") with the evidence the first sighting lacked:
# one armed round of throughput.py under `--arm launch` with a 10 s nsys window, while a
# sampler writes every SAMPLE seconds, until LINGER seconds after the round ended:
#   ps.txt     pid, ppid, pgid, sid, state, kernel wait, age and command of every python,
#              nsys and server process (is the port holder in state D? outside the group?)
#   stacks.txt /proc/PID/stack of every process in state D (needs root)
#   ports.txt  whether anything listens on the server's port (and the socket inode)
#   gpu.txt    nvidia-smi's compute apps (who still holds GPU memory)
# and keeps the round's target.log (what the agent's orphan sweep ended) under $OUT/logs.
# One call, about 3 minutes: run it as the whole device command after unpacking
# .gpu/bin.tgz (see docs/gpu-validation.md, "How the GPU runs are made").
set -uo pipefail
OUT=${OUT:-/tmp/launch-stall}
PORT=${PORT:-30051}
SAMPLE=${SAMPLE:-3}
LINGER=${LINGER:-60}
WINDOW=${WINDOW:-10}
mkdir -p "$OUT/logs"
sample() {
  local now; now=$(date +%T.%N | cut -c1-12)
  { echo "== $now"; ps -eo pid,ppid,pgid,sid,stat,wchan:32,etime,args --sort=pid |
      grep -E 'PID|python|nsys|server\.py' | grep -v grep; } >>"$OUT/ps.txt"
  for p in $(ps -eo pid=,stat= | awk '$2 ~ /^D/ {print $1}'); do
    { echo "== $now pid $p ($(cat /proc/$p/comm 2>/dev/null))"; cat /proc/$p/stack 2>&1; } >>"$OUT/stacks.txt"
  done
  # The GPU machine has no ss: /proc/net/tcp* rows whose local port is PORT and state 0A
  # (LISTEN) say whether anything still listens; the inode ties it to a process.
  { echo "== $now"; awk -v p=":$(printf %04X "$PORT")" '$2 ~ p"$" && $4 == "0A" {print FILENAME, $2, "inode", $10}' \
      /proc/net/tcp /proc/net/tcp6 2>&1; } >>"$OUT/ports.txt"
  { echo "== $now"; nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>&1; } >>"$OUT/gpu.txt"
}
python3 scripts/gpu/throughput.py --agent "$PWD/.gpu/bin/nsys-agent" --only armed --arm launch \
  --rounds 1 --first-round 51 --secs "$WINDOW" --after 30 --slice 10 --port "$PORT" \
  --logs "$OUT/logs" --out "$OUT/round.json" -- --tp 2 --step-overhead-ms 5 >"$OUT/round.txt" 2>&1 &
round=$!
while kill -0 $round 2>/dev/null; do sample; sleep "$SAMPLE"; done
wait $round; echo "throughput.py exit $?" >>"$OUT/round.txt"
end=$((SECONDS + LINGER))
while [ $SECONDS -lt $end ]; do sample; sleep "$SAMPLE"; done
# Leave the machine as found: whatever still carries the round's marker goes.
for p in $(grep -l NSYS_AGENT_TARGET= /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do kill -9 "$p" 2>/dev/null; done
tail -5 "$OUT/round.txt"
