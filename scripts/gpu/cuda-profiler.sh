#!/usr/bin/env bash
# GPU run of the cuda-profiler backend (issue 10): nsys 2025.3.1 armed with
# --capture-range=cudaProfilerApi, a real CUDA server (scripts/gpu/profserver.py) that
# opens ranges at step boundaries when asked through /start_profile with CUDA_PROFILER.
# Expects .gpu/bin/nsys-agent and .gpu/deb/{libdw1,libelf1}*.deb like validate.sh. Writes
# logs, manifests and file listings to $OUT — never a report (they embed the environment).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/cuda-profiler.log") 2>&1
A=$PWD/.gpu/bin/nsys-agent
nvidia-smi -L
. scripts/gpu/nsys-env.sh

export NSYS_AGENT_CUDA_RANGE_WAIT=60s
D=/tmp/cp; rm -rf "$D"; mkdir -p "$D"
PORT=30007
"$A" run --arm cuda-profiler --server-url "http://127.0.0.1:$PORT" --data-dir "$D/data" --ready-file "$D/ready" \
  --listen 127.0.0.1:0 --session valcp -- python3 scripts/gpu/profserver.py --port "$PORT" >"$D/agent.log" 2>&1 &
agent=$!
for _ in $(seq 1 240); do [ -s "$D/ready" ] && break; kill -0 $agent 2>/dev/null || break; sleep 0.5; done
if [ ! -s "$D/ready" ]; then echo "agent did not come up"; cat "$D/agent.log"; exit 1; fi
export NSYS_AGENT_ADDR=$(cat "$D/ready")
for _ in $(seq 1 120); do
  python3 -c "import urllib.request;urllib.request.urlopen('http://127.0.0.1:$PORT/health',timeout=1)" 2>/dev/null && break
  sleep 0.5
done
"$A" status
"$A" backends
"$A" sessions

echo; echo "######## window bounded by 20 steps, ended by the server"
/usr/bin/time -f "start --wait (20 steps): %e s" "$A" start --backend cuda-profiler --steps 20 --name steps20 --export --wait
"$A" show steps20
"$A" sessions

echo; echo "######## window closed by stop"
"$A" start --backend cuda-profiler --name stopped
sleep 2
/usr/bin/time -f "stop: %e s" "$A" stop
"$A" show stopped

echo; echo "######## a second steps window"
"$A" start --backend cuda-profiler --steps 5 --name steps5 --wait
"$A" windows
echo "range reports left next to the first output (should be none: all moved):"
ls -la "$D"/data/sessions/*/ 2>/dev/null
echo "window folders:"
ls -la "$D"/data/windows/*/
w=$(ls "$D"/reports 2>/dev/null | head -1)
sq=$(ls "$D"/data/windows/*/steps20.sqlite 2>/dev/null | head -n 1)
[ -n "$sq" ] && "$A" analyze -o json "$sq" >"$OUT/analyze-cuda-profiler.json" && "$A" analyze "$sq"

kill -INT $agent; wait $agent; echo "agent exit: $?"
"$A" sessions
mkdir -p "$OUT/cp"
cp "$D/agent.log" "$D/data/target.log" "$OUT/cp/"
for m in "$D"/data/windows/*/manifest.json; do cp "$m" "$OUT/cp/$(basename "$(dirname "$m")").json"; done
