#!/usr/bin/env bash
# GPU validation run (docs/gpu-validation.md): nsys-agent against the real nsys 2025.3.1
# on the GPU machine, in start-later and launch modes, with a real CUDA target of two
# forked ranks (scripts/gpu/ranks.py), then the control benchmark.
# Expects .gpu/bin/{nsys-agent,bench-control} (built on the CPU machine) and
# .gpu/deb/{libdw1,libelf1}*.deb (QdstrmImporter needs libdw.so.1). Writes only logs,
# manifests and analysis JSON to $OUT — never a report (they embed the environment).
# ALL=1: then also scripts/gpu/validate-all.sh (the SGLang-compatible server.py: nsys,
# cuda-profiler, torch and layerwise windows, two GPUs when there are); ALL=only: just that.
set -uo pipefail
if [ "${ALL:-0}" = only ]; then exec scripts/gpu/validate-all.sh; fi
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/validate.log") 2>&1
A=$PWD/.gpu/bin/nsys-agent
nvidia-smi -L
. scripts/gpu/nsys-env.sh
"$A" sessions

mkdir -p /tmp/keep
for arm in start-later launch; do
  echo; echo "######## arm=$arm"
  D=/tmp/v-$arm; rm -rf "$D"; mkdir -p "$D"
  "$A" run --arm "$arm" --data-dir "$D/data" --ready-file "$D/ready" --listen 127.0.0.1:0 --session "val${arm//-/}" \
    -- python3 scripts/gpu/ranks.py >"$D/agent.log" 2>&1 &
  agent=$!
  for _ in $(seq 1 240); do [ -s "$D/ready" ] && break; kill -0 $agent 2>/dev/null || break; sleep 0.5; done
  if [ ! -s "$D/ready" ]; then echo "agent did not come up"; cat "$D/agent.log"; continue; fi
  export NSYS_AGENT_ADDR=$(cat "$D/ready")
  sleep 5   # let the ranks build their graphs
  "$A" status
  "$A" sessions
  for i in 1 2 3; do
    extra=""; [ $i = 3 ] && extra="--export"
    "$A" start --name "w$i" $extra
    sleep 2
    /usr/bin/time -f "stop (CLI, waits for ready): %e s" "$A" stop
  done
  "$A" windows
  for w in $("$A" windows -o json | sed -n 's/^    "id": "\(.*\)",$/\1/p'); do "$A" pull "$w" --dir "$D/reports"; done
  ls -la "$D"/reports/*/
  "$A" show latest   # window 3: the GPU TIME line comes from its summary
  sq=$(ls "$D"/reports/*/w3.sqlite 2>/dev/null | head -n 1)
  if [ -n "$sq" ]; then
    "$A" analyze "$sq"
    "$A" analyze -o json "$sq" >"$OUT/analyze-$arm.json"
  fi
  kill -INT $agent; wait $agent; echo "agent exit: $?"
  tail -n 5 "$D/agent.log"
  "$A" sessions
  mkdir -p "/tmp/keep/$arm"
  cp "$D/agent.log" "$D/data/target.log" "/tmp/keep/$arm/"
  for m in "$D"/data/windows/*/manifest.json; do cp "$m" "/tmp/keep/$arm/$(basename "$(dirname "$m")").json"; done
done

echo; echo "######## restart: kill -9 the agent mid-window (start-later), start it again, stop"
D=/tmp/v-restart; rm -rf "$D"; mkdir -p "$D"
"$A" run --data-dir "$D/data" --ready-file "$D/ready" --listen 127.0.0.1:0 --session valrestart -- python3 scripts/gpu/ranks.py >"$D/agent1.log" 2>&1 &
agent=$!
for _ in $(seq 1 240); do [ -s "$D/ready" ] && break; sleep 0.5; done
export NSYS_AGENT_ADDR=$(cat "$D/ready"); sleep 5
"$A" start --name survives --export
sleep 2
kill -KILL $agent; wait $agent 2>/dev/null; rm -f "$D/ready"
sleep 2
"$A" sessions
"$A" run --data-dir "$D/data" --ready-file "$D/ready" --listen 127.0.0.1:0 >"$D/agent2.log" 2>&1 &
agent=$!
for _ in $(seq 1 240); do [ -s "$D/ready" ] && break; sleep 0.5; done
export NSYS_AGENT_ADDR=$(cat "$D/ready")
"$A" status
"$A" stop
"$A" show latest
"$A" start --name after; sleep 2; "$A" stop
"$A" windows
kill -INT $agent; wait $agent; echo "agent exit: $?"
cat "$D/agent2.log" | head -5
"$A" sessions
mkdir -p /tmp/keep/restart; cp "$D"/agent*.log "$D/data/target.log" /tmp/keep/restart/
for m in "$D"/data/windows/*/manifest.json; do cp "$m" "/tmp/keep/restart/$(basename "$(dirname "$m")").json"; done

tar -C /tmp/keep -czf "$OUT/manifests-and-logs.tgz" .
if [ "${ALL:-0}" = 1 ]; then scripts/gpu/validate-all.sh; echo "validate-all exit: $?"; fi
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0

echo; echo "######## bench (launch mode on both sides)"
cd /tmp && "$OLDPWD/.gpu/bin/bench-control" -bin "$A" -n 20 | tee "$OUT/bench.txt"
