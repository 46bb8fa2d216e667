#!/usr/bin/env bash
# The GPU check: CUDA tests, CPU-vs-CUDA equality, and engine / env / training throughput on CUDA,
# in one run that ends inside ~8 minutes (docs/benchmarks.md, "GPU check").
#
#     bash benchmarks/gpu_check.sh                      # python3, GRIDLIGHT_DATA_DIR already set
#     PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# Steps, in order (each under its own timeout, all under GPU_CHECK_BUDGET_S, default 450 s; a
# step that would start with too little of the budget left is skipped, and says so):
#   tests_cuda        pytest -q tests -k cuda (the device-parametrised tests' CUDA cases)
#   device_equality   episode metrics on cpu == on cuda: hangzhou_4x4 / max_pressure and
#                     grid_16x8 / fixed_time, 4 distinct demand samples, 1800 s, eager
#   train_torchrl     train_throughput.py --trainer torchrl --device cuda --compile, B = 4096
#   train_sb3         train_throughput.py --trainer sb3 --device cuda, B = 256, eager engine
#   env_gym           env_throughput.py --device cuda (compiled), Gymnasium vector env, B = 4096
#   sim_hangzhou      sim_throughput.py --device cuda --compile, hangzhou_4x4, B = 4096, samples
#   sim_grid_16x8     sim_throughput.py --device cuda --compile, grid_16x8, B = 8192, original
#   memory_grid_16x8  memory_scaling.py --device cuda --compile, grid_16x8, B = 32768 copies over
#                     64 demand samples, 5 steps: peak GPU memory (target: within 40 GB)
#   sim_manhattan     sim_throughput.py --device cuda --compile, manhattan_28x7 (196 signals),
#                     B = 1024, samples (needs sumo/manhattan_28x7 in the data directory)
#   city_day          city_day.py --device cuda, grid_16x8, 16 copies x 1 h of the city-day
#                     (08:00-09:00, the morning peak) with incidents at 25/h and 5% probes, after
#                     a 30-minute training run: wall time to simulate (eager engine, recording
#                     readings) and to detect (numpy, on the CPU); the full day is
#                     docs/incidents.md's "A city-day"
# Without CUDA it says so, runs small CPU versions of the same scripts (to show they work) and
# exits 0 when those pass.
#
# Output: the scripts' JSON lines on stdout, then one {"check": ...} line per step and a summary
# line; everything that is JSON also goes to $OUT/gpu_check.jsonl when $OUT is set (pytest's
# own output to $OUT/tests_cuda.log). Progress and non-JSON output go to stderr.
# Exit status: 0 when every step that ran passed, 1 otherwise.

set -u
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
START=$(date +%s)
JSONL=""
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" && JSONL="$OUT/gpu_check.jsonl" && : > "$JSONL"
fi
export PYTHONUNBUFFERED=1

say() { printf '[gpu_check %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
json() {  # one JSON line to stdout (and to the jsonl file)
    printf '%s\n' "$1"
    [ -n "$JSONL" ] && printf '%s\n' "$1" >> "$JSONL"
    return 0
}

PASSED=0; FAILED=0; SKIPPED=0; FAILED_NAMES=""
# step NAME TIMEOUT_S COMMAND...: runs COMMAND under min(TIMEOUT_S, budget left); its JSON lines
# go to stdout, everything else to stderr; records {"check": NAME, "status": ...}.
step() {
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if (( left < 30 )); then
        say "$name: skipped, ${left}s of the ${BUDGET}s budget left"
        json "{\"check\": \"$name\", \"status\": \"skipped\", \"reason\": \"budget\", \"budget_left_s\": $left}"
        SKIPPED=$((SKIPPED + 1)); return 0
    fi
    (( limit > left )) && limit=$left
    say "$name (timeout ${limit}s): $*"
    local out t0 rc status detail=""
    out=$(mktemp)
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$out"
    rc=$?
    local took=$(( $(date +%s) - t0 ))
    grep -v '^{' "$out" >&2
    while IFS= read -r line; do json "$line"; done < <(grep '^{' "$out")
    if [ "$name" = tests_cuda ]; then
        [ -n "$JSONL" ] && cp "$out" "$OUT/tests_cuda.log"
        detail=$(grep -E '(passed|failed|skipped|deselected|error)' "$out" | tail -n 1 | tr -d '"=' | sed 's/^ *//;s/ *$//')
    fi
    rm -f "$out"
    case $rc in
        0) status=ok ;;
        124|137) status=timeout ;;
        5) if [ "$name" = tests_cuda ]; then status=ok; detail="no test matched -k cuda"; else status=failed; fi ;;
        *) status=failed ;;
    esac
    json "{\"check\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $took, \"timeout_s\": $limit, \"detail\": \"$detail\"}"
    if [ "$status" = ok ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); FAILED_NAMES="$FAILED_NAMES $name"; fi
    say "$name: $status in ${took}s${detail:+ ($detail)}"
}

if [ -z "${GRIDLIGHT_DATA_DIR:-}" ]; then
    say "GRIDLIGHT_DATA_DIR is not set: dataset scenarios (hangzhou_4x4) will be missing"
fi
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    CUDA=1
else
    CUDA=0
fi
json "$("$PY" - "$CUDA" <<'EOF'
import json, sys
sys.path.insert(0, "benchmarks")
from common import machine_info
import torch
info = {"check": "machine", "cuda": sys.argv[1] == "1", "machine": machine_info()}
if torch.cuda.is_available():
    info["cuda_version"] = torch.version.cuda
    info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
try:
    import subprocess
    info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or None
except Exception:
    info["commit"] = None
print(json.dumps(info))
EOF
)"

if [ "$CUDA" = 1 ]; then
    say "CUDA available: full check, budget ${BUDGET}s"
    step tests_cuda 150 "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors tests -k cuda
    step device_equality 90 "$PY" benchmarks/device_equality.py --devices cpu cuda --copies 4 --seconds 1800
    step train_torchrl 150 "$PY" benchmarks/train_throughput.py --trainer torchrl --device cuda --compile \
        --scenario hangzhou_4x4 --agent ppo_shared --copies 4096 --warmup 1 --iterations 3 \
        --override agent.batch_size=262144 --override agent.n_epochs=4
    step train_sb3 100 "$PY" benchmarks/train_throughput.py --trainer sb3 --device cuda \
        --scenario hangzhou_4x4 --agent ppo_shared --copies 256 --warmup 1 --iterations 2 \
        --override agent.batch_size=4096 --override agent.n_epochs=4
    step env_gym 110 "$PY" benchmarks/env_throughput.py --device cuda --scenario hangzhou_4x4 \
        --copies 4096 --adapters gym_vector_env --warmup 20 --steps 100
    step sim_hangzhou 100 "$PY" benchmarks/sim_throughput.py --device cuda --compile \
        --scenario hangzhou_4x4 --copies 4096 --demand samples --warmup 100 --steps 300
    step sim_grid_16x8 110 "$PY" benchmarks/sim_throughput.py --device cuda --compile \
        --scenario grid_16x8 --copies 8192 --demand original --warmup 100 --steps 200
    step memory_grid_16x8 150 "$PY" benchmarks/memory_scaling.py --device cuda --compile \
        --scenarios grid_16x8 --copies 32768 --samples 64 --steps 5
    if [ -d "${GRIDLIGHT_DATA_DIR:-../shared/datasets}/sumo/manhattan_28x7" ]; then
        step sim_manhattan 120 "$PY" benchmarks/sim_throughput.py --device cuda --compile \
            --scenario manhattan_28x7 --copies 1024 --demand samples --warmup 100 --steps 200
    else  # a data directory prepared without it (docs/benchmarks.md copies it): said, not failed
        say "sim_manhattan: skipped, no sumo/manhattan_28x7 in the data directory"
        json "{\"check\": \"sim_manhattan\", \"status\": \"skipped\", \"reason\": \"no data\"}"
        SKIPPED=$((SKIPPED + 1))
    fi
    step city_day 90 "$PY" benchmarks/city_day.py --device cuda --scenario grid_16x8 --copies 16 \
        --hours 1 --start-hour 8 --train-hours 0.5
else
    say "CUDA is not available here ($PY): the GPU parts are skipped; running the CPU parts small"
    step tests_cuda 150 "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors tests -k cuda
    step device_equality 60 "$PY" benchmarks/device_equality.py --devices cpu --copies 4 --seconds 300
    step train_torchrl 60 "$PY" benchmarks/train_throughput.py --trainer torchrl --scenario hangzhou_4x4 \
        --agent ppo_shared --copies 4 --warmup 1 --iterations 1 --override agent.n_steps=16
    step train_sb3 60 "$PY" benchmarks/train_throughput.py --trainer sb3 --scenario hangzhou_4x4 \
        --agent ppo_shared --copies 4 --warmup 1 --iterations 1 --override agent.n_steps=16
    step env_gym 60 "$PY" benchmarks/env_throughput.py --scenario hangzhou_4x4 --copies 4 --no-compile \
        --warmup 5 --steps 20
    step sim_hangzhou 60 "$PY" benchmarks/sim_throughput.py --no-compile --scenario hangzhou_4x4 \
        --copies 8 --demand samples --warmup 20 --steps 50
    step memory_grid_16x8 90 "$PY" benchmarks/memory_scaling.py --scenarios grid_16x8 --copies 64 \
        --samples 4 --steps 2
    step city_day 60 "$PY" benchmarks/city_day.py --scenario grid_4x4 --copies 1 --hours 0.25 \
        --start-hour 8 --train-hours 0.25
fi

TOTAL=$(( $(date +%s) - START ))
json "{\"check\": \"summary\", \"cuda\": $([ "$CUDA" = 1 ] && echo true || echo false), \"passed\": $PASSED, \"failed\": $FAILED, \"skipped\": $SKIPPED, \"failed_steps\": \"${FAILED_NAMES# }\", \"total_s\": $TOTAL, \"budget_s\": $BUDGET}"
say "summary: $PASSED passed, $FAILED failed${FAILED_NAMES:+ (${FAILED_NAMES# })}, $SKIPPED skipped, ${TOTAL}s"
[ "$CUDA" = 1 ] || say "no CUDA on this machine: only the CPU parts ran (small); run it on a GPU machine for the check itself"
[ "$FAILED" = 0 ] || exit 1
exit 0
