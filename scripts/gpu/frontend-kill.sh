#!/usr/bin/env bash
# The nsys front-end of a launch-mode agent killed with SIGKILL (as the OOM killer does)
# under the real GPU server: nsys-launcher starts the server in a session and process
# group of its own, so nothing of nsys takes it down; the agent must (its marker sweep).
# Records, under $OUT:
#   ps-before.txt, ps-after.txt  pid, ppid, pgid, sid, state and kernel wait of every nsys
#                                and server process, before the kill and 20 s after it
#   target.log                   what the agent wrote of what it ended
#   agent.log                    the agent's log; it stays up after its target is gone
#                                (docs/deployment.md: it serves what was captured) and is
#                                ended here with SIGINT, its exit code printed
# and prints whether anything still listens on the port or holds GPU memory.
# One call, about 1.5 minutes, after unpacking .gpu/bin.tgz (docs/gpu-validation.md).
set -uo pipefail
OUT=${OUT:-/tmp/frontend-kill}
PORT=${PORT:-30071}
PY=${PY:-/opt/torch/.venv/bin/python3}
SERVER_ARGS=${SERVER_ARGS:---tp 2}  # on a CPU machine: --tp 2 --engine fake
D=$(mktemp -d /tmp/fk.XXXXXX)
mkdir -p "$OUT"
snap() { ps -eo pid,ppid,pgid,sid,stat,wchan:24,args | grep -E 'PID|nsys|server\.py|spawn_main|resource_tracker' | grep -v grep; }
listening() { awk -v p=":$(printf %04X "$PORT")" '$2 ~ p"$" && $4 == "0A"' /proc/net/tcp /proc/net/tcp6 | wc -l; }
${AGENT:-.gpu/bin/nsys-agent} run --arm launch --data-dir "$D/data" --listen 127.0.0.1:0 --session fk -- \
  "$PY" "$PWD/scripts/gpu/server.py" --port "$PORT" $SERVER_ARGS >"$OUT/agent.log" 2>&1 &
agent=$!
for i in $(seq 120); do
  "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null && break
  sleep 1
done
echo "server healthy after ${i}s; listeners on $PORT: $(listening)"
snap >"$OUT/ps-before.txt"
front=$(pgrep -f "nsys launch --session-new=fk")
echo "kill -9 the front-end (pid $front) at $(date +%T.%N | cut -c1-12)"
kill -9 "$front"
sleep 20
snap >"$OUT/ps-after.txt"
echo "20 s later: $(($(wc -l <"$OUT/ps-after.txt") - 1)) nsys/server processes (ps-after.txt); listeners on $PORT: $(listening)"
! command -v nvidia-smi >/dev/null || nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader | sed 's/^/gpu app: /'
cp "$D/data/target.log" "$OUT/target.log" 2>/dev/null && grep -- '--- nsys-agent' "$OUT/target.log" | tail -6
kill -INT "$agent"
for i in $(seq 60); do kill -0 "$agent" 2>/dev/null || break; sleep 1; done
wait "$agent"; echo "agent exit $? (${i}s after SIGINT)"
# Leave the machine as found.
for p in $(grep -l NSYS_AGENT_TARGET= /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do kill -9 "$p" 2>/dev/null; done
rm -rf "$D"
