#!/usr/bin/env bash
# Idle overhead (DESIGN.md quality bar: a target armed under nsys but not capturing keeps
# >= 98 % of its bare throughput). Runs scripts/gpu/ranks.py for SECS seconds bare, then
# armed by nsys-agent in launch and start-later modes with no window open, and prints
# each rank's steps/s. Same expectations as validate.sh (.gpu/bin, .gpu/deb).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
SECS=${SECS:-30}
exec > >(tee "$OUT/idle-overhead.log") 2>&1
A=$PWD/.gpu/bin/nsys-agent
mkdir -p /tmp/dw; for f in .gpu/deb/*.deb; do dpkg -x "$f" /tmp/dw; done
export LD_LIBRARY_PATH=/tmp/dw/usr/lib/x86_64-linux-gnu
export NSYS_AGENT_NSYS=$(find /opt/nvidia -name nsys -type f -path '*target-linux-x64*' | sort | tail -n 1)
for round in 1 2; do
  echo "## round $round: bare"
  python3 scripts/gpu/ranks.py > /tmp/bare.log 2>&1 &
  p=$!; sleep "$SECS"; kill -INT $p; wait $p
  grep 'steps/s' /tmp/bare.log
  for arm in launch start-later; do
    echo "## round $round: armed ($arm), no window"
    D=/tmp/idle-$arm; rm -rf "$D"; mkdir -p "$D"
    "$A" run --arm "$arm" --data-dir "$D" --ready-file "$D/ready" --listen 127.0.0.1:0 -- python3 scripts/gpu/ranks.py > "$D/agent.log" 2>&1 &
    p=$!
    for _ in $(seq 1 240); do [ -s "$D/ready" ] && break; sleep 0.5; done
    sleep "$SECS"; kill -INT $p; wait $p
    grep 'steps/s' "$D/target.log"
  done
done
