#!/usr/bin/env bash
# The GPU proof of issue 12 (docs/gpu-validation.md, "validate-all"): nsys-agent against
# scripts/gpu/server.py, an SGLang-compatible server with real CUDA work, on this machine's
# GPUs. Scenarios (SCENARIOS, space-separated; default: all but tput):
#   selfcheck  server.py --self-check (every route and profiling mode, no nsys)
#   nsys       nsys windows x3, --arm start-later and --arm launch (window 3 exported)
#   cp         cuda-profiler windows: one bounded by --steps, one closed by stop
#   torch      torch-profiler windows (--backend torch): --steps and stop; merged trace, summary
#   layer      a layerwise-nvtx window: per-layer table in show, layers.csv
#   tp2        with 2+ GPUs: ranks on their own GPUs, NCCL all-reduce; nsys, cuda-profiler
#              (first-GPU ranks, then every rank) and torch windows; analyze names the slow rank
#   tput       decode throughput bare / armed-idle / capturing / after a window (throughput.py;
#              FIRST_ROUND continues the interleaving of an earlier call's rounds)
# Every capture is checked with `nsys-agent analyze -o json` + checkreport.py: every rank's
# kernels are in it (and NCCL kernels with tp2), and analyze names --slow-rank 1.
# Expects .gpu/bin/nsys-agent (plugins nsys-agent-backend-* beside it) and .gpu/deb/*.deb
# (scripts/gpu/nsys-env.sh). Writes only logs, manifests, analyze JSON, server info, check
# lines and layer tables to $OUT - never a report, an export or a trace (they embed this
# machine's environment). About 8 minutes for the single-GPU scenarios: split them over two
# commands with SCENARIOS if a command may run at most 10 minutes.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/validate-all.log") 2>&1
G=scripts/gpu
A=$PWD/.gpu/bin/nsys-agent
PY=${PY:-python3}
SCENARIOS=${SCENARIOS:-selfcheck nsys cp torch layer tp2}
WIN_SECS=${WIN_SECS:-2}          # length of a wall-clock window
OVERHEAD=${OVERHEAD:-5}          # server.py --step-overhead-ms: a real scheduler's CPU time per batch
                                 # (an 8B SGLang decode step is ~10 ms; this keeps reports near that rate)
CHECKS=$OUT/checks.txt
VA=/tmp/va
T=${CLIENT_TIMEOUT:-300}         # seconds any one nsys-agent client call may take
mkdir -p "$VA"
: >"$CHECKS"

say() { echo; echo "######## $*"; }
check() { # check PASS|FAIL WHAT
  echo "CHECK $1 $2" | tee -a "$CHECKS"
}
want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

[ -x "$A" ] || { echo "FATAL: $A is missing: build it on the CPU machine (docs/gpu-validation.md)"; exit 1; }
nvidia-smi -L
NGPU=$(nvidia-smi -L | grep -c '^GPU ')
$PY -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
$PY -c 'import transformers; print("transformers", transformers.__version__)' 2>/dev/null || echo "transformers: not installed (the model shape comes from flags)"
. $G/nsys-env.sh
"$A" version
"$A" backends
RUNHELP=$("$A" run --help 2>&1)
PLUGIN_ARGS=()
if grep -q -- '--plugin-dir' <<<"$RUNHELP"; then PLUGIN_ARGS=(--plugin-dir "$PWD/.gpu/bin"); fi
export NSYS_AGENT_PLUGIN_DIR=$PWD/.gpu/bin
RUN_BACKEND=0
grep -q -- '--backend' <<<"$RUNHELP" && RUN_BACKEND=1
ANALYZEHELP=$("$A" analyze --help 2>&1)
AX=()
# Torch windows run under an nsys that traces no CUDA: nsys tracing CUDA holds CUPTI's one
# subscriber and the torch profiler records no GPU data (measured here: 0 kernels against
# 2493 per rank; the torch backend refuses such windows).
TORCH_ARM=${TORCH_ARM:-start-later}
TORCH_TRACE=${TORCH_TRACE:-osrt,nvtx}

AGENT=""
LOAD=""
D=""
URL=""
cleanup() {
  [ -n "$LOAD" ] && kill -INT "$LOAD" 2>/dev/null
  [ -n "$AGENT" ] && kill -INT "$AGENT" 2>/dev/null && sleep 5 && kill -KILL "$AGENT" 2>/dev/null
  true
}
trap cleanup EXIT

# agent_up NAME PORT RUN-ARGS... -- SERVER-ARGS...: the agent launching server.py; waits
# until the agent serves and the server answers, saves the server's /get_server_info.
agent_up() {
  local name=$1 port=$2; shift 2
  local run=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do run+=("$1"); shift; done
  shift
  D=$VA/$name; rm -rf "$D"; mkdir -p "$D" "$OUT/$name"  # show-*.txt are written there while it runs
  URL=http://127.0.0.1:$port
  echo "agent: run ${run[*]} -- python3 $G/server.py --port $port $*"
  "$A" run "${PLUGIN_ARGS[@]}" --data-dir "$D/data" --ready-file "$D/ready" --listen 127.0.0.1:0 \
    --session "va${name//[^A-Za-z0-9]/}" "${run[@]}" -- python3 $G/server.py --port "$port" "$@" >"$D/agent.log" 2>&1 &
  AGENT=$!
  for _ in $(seq 1 600); do [ -s "$D/ready" ] && break; kill -0 $AGENT 2>/dev/null || break; sleep 0.5; done
  if [ ! -s "$D/ready" ]; then
    check FAIL "$name: the agent did not come up"; tail -n 40 "$D/agent.log"
    kill -INT "$AGENT" 2>/dev/null; sleep 10; kill -KILL "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null; AGENT=""
    return 1
  fi
  export NSYS_AGENT_ADDR=$(cat "$D/ready")
  if ! $PY -c "import sys; sys.path.insert(0, '$G'); from gpuserver.client import wait_healthy; wait_healthy('$URL', 400)"; then
    check FAIL "$name: the server never answered /health"; tail -n 60 "$D/data/target.log" 2>/dev/null; return 1
  fi
  $PY -c "import sys; sys.path.insert(0, '$G'); from gpuserver.client import request; print(request('$URL/get_server_info').text)" >"$D/server-info.json"
  "$A" status
  return 0
}

load_start() { # load_start [CONCURRENCY]
  $PY $G/loadgen.py --url "$URL" -c "${1:-4}" --max-tokens 64 --interval 10 --out "$D/load.json" >"$D/load.log" 2>&1 &
  LOAD=$!
}

load_stop() {
  [ -n "$LOAD" ] || return 0
  kill -INT "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null; LOAD=""
  tail -n 1 "$D/load.log"
}

# agent_down NAME: Ctrl-C the agent (it ends the server and the session), keep the logs.
agent_down() {
  local name=$1
  load_stop
  if [ -n "$AGENT" ]; then
    kill -INT "$AGENT" 2>/dev/null
    for _ in $(seq 1 360); do kill -0 "$AGENT" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$AGENT" 2>/dev/null; then check FAIL "$name: the agent did not exit 180 s after Ctrl-C"; kill -TERM "$AGENT"; sleep 5; fi
    wait "$AGENT" 2>/dev/null; echo "agent exit: $?"
    AGENT=""
  fi
  tail -n 5 "$D/agent.log"
  grep -E 'FATAL|Traceback|Error' "$D/data/target.log" 2>/dev/null | head -n 20
  "$A" sessions
  mkdir -p "$OUT/$name"
  cp "$D/agent.log" "$D/server-info.json" "$OUT/$name/" 2>/dev/null
  cp "$D/data/target.log" "$OUT/$name/target.log" 2>/dev/null
  cp "$D/load.json" "$D/load.log" "$OUT/$name/" 2>/dev/null
  for m in "$D"/data/windows/*/manifest.json; do [ -f "$m" ] && cp "$m" "$OUT/$name/$(basename "$(dirname "$m")").json"; done
  true
}

client() { timeout "$T" "$A" "$@"; local rc=$?; [ $rc = 0 ] || echo "nsys-agent $*: exit $rc"; return $rc; }

timed() { # timed LABEL COMMAND...: run it, then say how long it took
  local label=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@"; local rc=$?
  awk -v a="$t0" -v b="$(date +%s.%N)" -v l="$label" 'BEGIN { printf "%s: %.2f s\n", l, b - a }'
  return $rc
}

ready() { # ready NAME WINDOW
  local st; st=$($PY $G/winfile.py "$D/data" "$2" state 2>&1)
  if [ "$st" = ready ]; then check PASS "$1/$2: window ready"
  else check FAIL "$1/$2: window $st: $($PY $G/winfile.py "$D/data" "$2" error 2>/dev/null)"; fi
}

# analyze_check NAME WINDOW CHECKREPORT-ARGS...: analyze the window's export (or its
# traces) and check every rank is in it.
analyze_check() {
  local name=$1 win=$2; shift 2
  mkdir -p "$OUT/$name"
  local inputs
  inputs=$($PY $G/winfile.py "$D/data" "$win" sqlite | head -n 1)
  if [ -z "$inputs" ]; then inputs=$($PY $G/winfile.py "$D/data" "$win" trace); fi
  if [ -z "$inputs" ]; then
    local dir; dir=$($PY $G/winfile.py "$D/data" "$win" dir 2>/dev/null)
    inputs=$(find "${dir:-/nonexistent}" -name '*.sqlite' -o -name '*-TP-*.trace.json.gz' 2>/dev/null | sort)
  fi
  if [ -z "$inputs" ]; then check FAIL "$name/$win: no SQLite export or rank traces to analyze"; AX=(); return 1; fi
  # analyze's own checks, where this nsys-agent has them: the ranks it must find (by pid in
  # an nsys export), NVTX when the caller asked (AX=(--expect-nvtx)).
  local ax=() pids
  pids=$($PY $G/checkreport.py --server-info "$D/server-info.json" --print-pids)
  if grep -q -- '--expect-ranks' <<<"$ANALYZEHELP" && [ -n "$pids" ]; then
    ax+=(--expect-ranks "$(awk -F, '{ print NF }' <<<"$pids")")
    case "$inputs" in *.sqlite) ax+=(--expect-pids "$pids") ;; esac
    ax+=("${AX[@]}")
  fi
  AX=()
  # shellcheck disable=SC2086
  if ! timeout "$T" "$A" analyze -o json "${ax[@]}" $inputs >"$OUT/$name/analyze-$win.json" 2>"$OUT/$name/analyze-$win.err"; then
    check FAIL "$name/$win: analyze failed: $(tail -n 3 "$OUT/$name/analyze-$win.err")"; return 1
  fi
  # shellcheck disable=SC2086
  timeout "$T" "$A" analyze "${ax[@]}" $inputs 2>/dev/null | head -n 60
  $PY $G/checkreport.py --analyze "$OUT/$name/analyze-$win.json" --server-info "$D/server-info.json" \
    --name "$name/$win" "$@" | tee -a "$CHECKS"
}

# ---- the scenarios ----

SRV=(--tp 2 --slow-rank 1 --enable-metrics --step-overhead-ms "$OVERHEAD" --background-requests 2)

if want selfcheck; then
  say "self-check: server.py --self-check ${SRV[*]} (no nsys)"
  mkdir -p "$OUT/selfcheck"
  timeout 300 $PY $G/server.py --self-check "${SRV[@]}" >"$OUT/selfcheck/tp2.log" 2>&1; rc=$?
  grep -E '^SELF-CHECK|FATAL|Error|ready in' "$OUT/selfcheck/tp2.log" | cut -c1-400
  if [ $rc = 0 ]; then check PASS "selfcheck: tp2 on one GPU"; else check FAIL "selfcheck: tp2 on one GPU (exit $rc)"; fi
  grep -q '^SELF-CHECK:' "$OUT/selfcheck/tp2.log" || { echo "FATAL: the server did not even start; nothing below can work"; tail -n 60 "$OUT/selfcheck/tp2.log"; exit 1; }
fi

if want nsys; then
  port=30101
  for arm in ${NSYS_ARMS:-start-later launch}; do
    say "nsys windows, --arm $arm"
    name=nsys-$arm
    if agent_up "$name" $port --arm "$arm" -- "${SRV[@]}"; then
      load_start
      sleep 3
      for i in 1 2 3; do
        extra=(); [ $i = 3 ] && extra=(--export)
        client start --name "w$i" "${extra[@]}"
        sleep "$WIN_SECS"
        timed "stop w$i (CLI, waits for ready)" client stop
      done
      for i in 1 2 3; do ready "$name" "w$i"; done
      sleep 10 # the agent's checks of the last window
      for i in 1 2 3; do
        v=$($PY $G/winfile.py "$D/data" "w$i" verdict 2>&1)
        case $v in ok*) check PASS "$name/w$i: verdict $v" ;; *) check FAIL "$name/w$i: verdict $v" ;; esac
      done
      client show w3 | tee "$OUT/$name/show-w3.txt"
      analyze_check "$name" w3 --expect-ranks 2 --expect-slow 1
    fi
    agent_down "$name"
    port=$((port + 1))
  done
fi

if want cp; then
  say "cuda-profiler windows"
  name=cp
  export NSYS_AGENT_CUDA_RANGE_WAIT=${NSYS_AGENT_CUDA_RANGE_WAIT:-90s}
  if agent_up "$name" 30111 --arm cuda-profiler --server-url http://127.0.0.1:30111 -- "${SRV[@]}"; then
    load_start
    sleep 3
    timed "start --steps 20 --wait" client start --backend cuda-profiler --steps 20 --name steps20 --export --wait
    client start --backend cuda-profiler --name stopped --export
    sleep 1
    timed "stop" client stop
    for w in steps20 stopped; do ready "$name" $w; analyze_check "$name" $w --expect-ranks 2 --expect-slow 1; done
    client show steps20 | tee "$OUT/$name/show-steps20.txt"
    grep -E 'cudaProfiler(Start|Stop)' "$D/data/target.log" | head -n 8
  fi
  agent_down "$name"
fi

if want torch; then
  say "torch-profiler windows (--arm $TORCH_ARM)"
  name=torch
  if agent_up "$name" 30121 --arm "$TORCH_ARM" --trace "$TORCH_TRACE" --server-url http://127.0.0.1:30121 -- "${SRV[@]}"; then
    load_start
    sleep 3
    timed "start --backend torch --steps 20 --wait" client start --backend torch --steps 20 --name t20 --wait
    client start --backend torch --name tstop
    sleep 1
    timed "stop (torch, waits for every rank's trace)" client stop
    for w in t20 tstop; do
      ready "$name" $w
      client show $w | tee "$OUT/$name/show-$w.txt"
      m=$($PY $G/winfile.py "$D/data" $w merged-trace | head -n 1)
      if [ -n "$m" ]; then check PASS "$name/$w: merged trace $(basename "$m") ($(stat -c %s "$m") bytes)"; else check FAIL "$name/$w: no merged trace"; fi
      s=$($PY $G/winfile.py "$D/data" $w summary-json)
      if [ "$s" != null ] && [ -n "$s" ]; then check PASS "$name/$w: summary in the manifest"; else check FAIL "$name/$w: no summary in the manifest"; fi
      analyze_check "$name" $w --expect-ranks 2 --expect-slow 1
    done
  fi
  agent_down "$name"
fi

if want layer; then
  say "layerwise-nvtx window"
  name=layer
  # The flags are given explicitly: the plugin's launch hook adds them to SGLang commands,
  # and server.py is not python -m sglang.launch_server.
  LSRV=("${SRV[@]}" --enable-layerwise-nvtx-marker --disable-cuda-graph)
  if [ $RUN_BACKEND = 1 ]; then runargs=(--backend layerwise-nvtx --server-url http://127.0.0.1:30131)
  else runargs=(--arm cuda-profiler --server-url http://127.0.0.1:30131); fi
  if agent_up "$name" 30131 "${runargs[@]}" -- "${LSRV[@]}"; then
    load_start 2
    sleep 3
    timed "start --backend layerwise-nvtx --steps 10 --wait" client start --backend layerwise-nvtx --steps 10 --name layers --export --wait
    ready "$name" layers
    client show layers | tee "$OUT/$name/show-layers.txt"
    if grep -q 'model\.model\.layers\.' "$OUT/$name/show-layers.txt"; then check PASS "$name/layers: per-layer table in show"
    else check FAIL "$name/layers: no per-layer rows (model.model.layers.N...) in show"; fi
    dir=$($PY $G/winfile.py "$D/data" layers dir 2>/dev/null)
    csv=$(find "${dir:-/nonexistent}" -name 'layers.csv' 2>/dev/null | head -n 1)
    if [ -n "$csv" ]; then cp "$csv" "$OUT/$name/layers.csv"; check PASS "$name/layers: layers.csv ($(wc -l <"$csv") lines)"; head -n 15 "$csv"
    else check FAIL "$name/layers: no layers.csv in the window"; fi
    AX=(--expect-nvtx)
    analyze_check "$name" layers --expect-ranks 2
  fi
  agent_down "$name"
fi

if want tp2; then
  if [ "$NGPU" -lt 2 ]; then
    say "tp2: skipped ($NGPU GPU; it needs 2)"
  else
    say "tp2: ranks on their own GPUs, NCCL (NCCL_NVLS_ENABLE=0)"
    export NCCL_NVLS_ENABLE=0
    mkdir -p "$OUT/tp2"
    TP2=(--tp 2 --slow-rank 1 --enable-metrics --step-overhead-ms "$OVERHEAD" --background-requests 2)
    timeout 300 $PY $G/server.py --self-check "${TP2[@]}" >"$OUT/tp2/selfcheck.log" 2>&1; rc=$?
    grep -E '^SELF-CHECK (FAIL|PASS server_info|PASS graph)|^SELF-CHECK:|NCCL|FATAL' "$OUT/tp2/selfcheck.log" | cut -c1-400
    if [ $rc != 0 ]; then
      check FAIL "tp2: self-check with CUDA graphs over NCCL (exit $rc); retrying with --disable-cuda-graph"
      TP2+=(--disable-cuda-graph)
      timeout 300 $PY $G/server.py --self-check "${TP2[@]}" >"$OUT/tp2/selfcheck-eager.log" 2>&1; rc=$?
      grep -E '^SELF-CHECK FAIL|^SELF-CHECK:' "$OUT/tp2/selfcheck-eager.log" | cut -c1-400
    fi
    if [ $rc = 0 ]; then check PASS "tp2: self-check (${TP2[*]})"; else check FAIL "tp2: self-check (exit $rc)"; fi

    name=tp2-nsys
    if agent_up "$name" 30141 --arm start-later -- "${TP2[@]}"; then
      load_start; sleep 3
      client start --name w1 --export; sleep "$WIN_SECS"; client stop
      ready "$name" w1
      analyze_check "$name" w1 --expect-ranks 2 --expect-comm --expect-slow 1
    fi
    agent_down "$name"

    for who in first all; do
      name=tp2-cp-$who
      if agent_up "$name" 30151 --arm cuda-profiler --server-url http://127.0.0.1:30151 -- "${TP2[@]}" --cuda-profiler-ranks $who; then
        load_start; sleep 3
        client start --backend cuda-profiler --steps 20 --name steps20 --export --wait
        ready "$name" steps20
        # With "first" only rank 0 calls cudaProfilerStart (newer SGLang): whether
        # nsys then has rank 1's kernels is what this window measures.
        analyze_check "$name" steps20 --expect-ranks 2 --expect-comm
      fi
      agent_down "$name"
    done

    name=tp2-torch
    if agent_up "$name" 30161 --arm "$TORCH_ARM" --trace "$TORCH_TRACE" --server-url http://127.0.0.1:30161 -- "${TP2[@]}"; then
      load_start; sleep 3
      client start --backend torch --steps 20 --name t20 --wait
      ready "$name" t20
      analyze_check "$name" t20 --expect-ranks 2 --expect-comm --expect-slow 1
    fi
    agent_down "$name"
  fi
fi

if want tput; then
  say "throughput: bare / armed-idle / capturing / after-window"
  $PY $G/throughput.py --agent "$A" --rounds "${ROUNDS:-3}" --first-round "${FIRST_ROUND:-1}" --secs "${TPUT_SECS:-10}" --after "${AFTER:-60}" \
    --logs "$OUT/throughput-logs" --out "$OUT/throughput.json" -- --tp 2 --step-overhead-ms "$OVERHEAD"
  # The servers' logs stay; nothing else of the runs is kept.
fi

say "summary"
pass=$(grep -c '^CHECK PASS' "$CHECKS")
fail=$(grep -c '^CHECK FAIL' "$CHECKS")
grep '^CHECK FAIL' "$CHECKS"
echo "VALIDATE-ALL: $pass passed, $fail failed (scenarios: $SCENARIOS; $NGPU GPU)"
# Nothing that embeds the machine's environment goes back.
find "$OUT" \( -name '*.nsys-rep' -o -name '*.sqlite' -o -name '*.qdstrm' -o -name '*.trace.json.gz' \) -print -delete
[ "$fail" = 0 ]
