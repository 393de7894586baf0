#!/usr/bin/env bash
# The after-window question of docs/gpu-validation.md: the minute after an nsys window ran
# 2-3 % below the same round's armed-idle rate (start-later, --trace cuda,nvtx, CUDA
# graphs traced node by node), with no agent or nsys work to see. Which part of the
# collection leaves it behind? One armed round per variant, the minute after cut into
# 10 s slices, each compared with its own round's armed-idle rate:
#   node   the default (graphs node by node), for a same-day reference
#   graph  --cuda-graph-trace=graph (graph launches whole: less CUPTI work per replay)
#   nvtx   --trace nvtx (no CUDA traced at all)
# About 2 minutes a variant on one H200. Run after unpacking .gpu/bin.tgz (see
# docs/gpu-validation.md, "How the GPU runs are made"); VARIANTS picks some.
set -uo pipefail
OUT=${OUT:-/tmp/after-window}
VARIANTS=${VARIANTS:-node graph nvtx}
PORT=${PORT:-30061}
mkdir -p "$OUT"
T=(python3 scripts/gpu/throughput.py --agent "$PWD/.gpu/bin/nsys-agent" --only armed --rounds 1 --secs 10 --after 60 --slice 10)
S=(-- --tp 2 --step-overhead-ms 5)
n=60
for v in $VARIANTS; do
  n=$((n + 1))
  case $v in
    node) extra=() ;;
    graph) extra=(--nsys-arg=--cuda-graph-trace=graph) ;;
    nvtx) extra=(--trace nvtx) ;;
    *) echo "after-window: unknown variant $v" >&2; exit 2 ;;
  esac
  echo "######## $v"
  timeout 300 "${T[@]}" "${extra[@]}" --first-round $n --port $((PORT + n)) --logs "$OUT/$v" --out "$OUT/$v.json" "${S[@]}" 2>&1 | tail -12
done
