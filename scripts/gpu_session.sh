#!/usr/bin/env bash
# What a lent GPU machine runs for elcl, in stages that each fit one short call:
#
#   scripts/gpu_session.sh check OUT              test suite (CUDA tests included), TF-IDF caches warmed
#   scripts/gpu_session.sh bench OUT              step / curvature benchmarks on CUDA, JSON under OUT
#   scripts/gpu_session.sh seeds OUT DEADLINE_S SEED...
#                                                 more seeds of configs/reproduce_cpu.yaml (both orders,
#                                                 the λ values the CPU seeds ran: 1e2–1e5 in order 0,
#                                                 1e3–1e5 in order 1), PAR runs at a time, stopped
#                                                 at DEADLINE_S; exported runs under OUT
#
# The corpora come from $ELCL_DATA_DIR, TF-IDF caches go to $ELCL_CACHE_DIR. Runs go to
# $RUNS (default runs_gpu). The benchmark's small runs are GPU-light and CPU-bound, so
# the card is shared by PAR (default 14) processes of one thread each. Every run but
# naive waits for its (order, seed)'s naive run to finish the first task and adopts it
# (train.share_first_task), so a block of 10 runs trains the first task once. A block is
# usable only when all its runs are done: the caller keeps complete blocks only.
#
# On a leased machine whose working tree is copied afresh for every call, the runs must be
# packed within the same call (this stage does): nothing under the tree outlives the call.
set -uo pipefail
stage=${1:?stage: check | bench | seeds}
OUT=${2:?output folder}
mkdir -p "$OUT"
PY=${PY:-python3}
RUNS=${RUNS:-runs_gpu}
PAR=${PAR:-14}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-configs/reproduce_cpu.yaml}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

case "$stage" in
check)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/env.txt"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/env.txt"
  # Warm the TF-IDF caches the benchmark needs while the tests run.
  $PY - >"$OUT/warm.log" 2>&1 <<EOF &
import time
from elcl.config import load_config
from elcl.training.tasks import candidate_generator, task_ontology
cfg = load_config("$CONFIG")
for t in cfg.tasks:
    t0 = time.time()
    candidate_generator(task_ontology(t, cfg)[1], cfg.candidates)
    print(t, f"{time.time() - t0:.1f}s", flush=True)
EOF
  warm=$!
  # Straight to the file (a pipe through tail loses everything when the call is cut), and a
  # per-test limit so that a hanging test is named rather than the stage going silent.
  $PY -m pytest -q -n 8 -p no:cacheprovider --timeout 120 >"$OUT/pytest.log" 2>&1
  tail -n 40 "$OUT/pytest.log"
  wait $warm; cat "$OUT/warm.log"
  ;;
bench)
  $PY scripts/bench_penalty.py --device "$DEVICE" --repeat 5 --out "$OUT/bench_penalty_h200.json" 2>&1 | tee "$OUT/bench.log"
  $PY scripts/bench_penalty.py --device "$DEVICE" --config configs/reproduce_bert.yaml --task ncbi_disease --batches 4 --repeat 5 \
    --out "$OUT/bench_penalty_reproduce_bert_h200.json" 2>&1 | tee -a "$OUT/bench.log"
  $PY scripts/bench_factors.py --device "$DEVICE" --no-curvlinops --batches 4 --repeat 3 --out "$OUT/bench_factors_h200.json" 2>&1 | tee -a "$OUT/bench.log"
  ;;
seeds)
  DEADLINE=${3:?deadline in seconds}
  shift 3
  seeds=("$@")
  jobs_file=$(mktemp)
  # naive of the next seed is queued before the rest of this seed, so the next block's
  # first task trains while this block's penalty runs go.
  block() { # seed
    for o in 0 1; do
      echo "$o $1 single -"
      for m in ewc kfac; do
        if [ "$o" = 0 ]; then grid="100 1000 10000 100000"; else grid="1000 10000 100000"; fi
        for l in $grid; do echo "$o $1 $m $l"; done
      done
    done
  }
  for i in "${!seeds[@]}"; do
    [ "$i" = 0 ] && { echo "0 ${seeds[0]} naive -"; echo "1 ${seeds[0]} naive -"; }
    n=$((i + 1))
    if [ "$n" -lt "${#seeds[@]}" ]; then echo "0 ${seeds[$n]} naive -"; echo "1 ${seeds[$n]} naive -"; fi
    block "${seeds[$i]}"
  done >"$jobs_file"
  logs="$RUNS/logs"
  mkdir -p "$RUNS" "$logs"
  export RUNS DEVICE CONFIG PY logs EXTRA_SET="${EXTRA_SET:-}"
  job() {
    local o=$1 s=$2 m=$3 l=$4 name
    name="$m$([ "$l" = - ] || echo "-lam$l")-o$o-s$s"
    if [ "$m" != naive ]; then
      local state="$RUNS/reproduce_cpu/naive-o$o-s$s/run.json" waited=0
      until $PY -c "import json,sys; sys.exit(json.load(open('$state'))['steps_done'] < 1)" 2>/dev/null; do
        sleep 3; waited=$((waited + 3)); [ $waited -ge 600 ] && break
      done
    fi
    local args=(--set "method.name=$m" --set "seeds=[$s]" --set "train.device=$DEVICE")
    [ "$l" = - ] || args+=(--set "method.$m.lambda_grid=[$l]")
    echo "$(date +%T) start $name"
    # shellcheck disable=SC2086
    $PY -m elcl train --config "$CONFIG" "${args[@]}" $EXTRA_SET --order "$o" --output-dir "$RUNS" \
      --resume "$RUNS/reproduce_cpu" >"$logs/$name.log" 2>&1
    echo "$(date +%T) end $name rc=$?"
  }
  export -f job
  echo "$(date +%T) $(wc -l <"$jobs_file") runs queued, $PAR at a time, deadline ${DEADLINE}s"
  timeout -s TERM "$DEADLINE" xargs -P "$PAR" -L 1 bash -c 'job "$@"' _ <"$jobs_file" | tee "$OUT/schedule.log"
  sleep 5
  # Export every finished run first (it needs nothing but that run's files), the report
  # after: a report that cannot be built must not cost the runs.
  $PY - "$RUNS" >"$logs/evaluate.log" 2>&1 <<'PYEOF'
import json
import sys
from pathlib import Path

from elcl.evaluation.export import export_experiment

root = Path(sys.argv[1]) / "reproduce_cpu"
done = [d for d in sorted(root.iterdir()) if (d / "run.json").is_file()
        and json.loads((d / "run.json").read_text())["status"] == "done"]
export_experiment(done, root, Path(sys.argv[1]) / "export")
print(f"exported {len(done)} finished runs")
PYEOF
  $PY -m elcl evaluate "$RUNS/export" --out "$RUNS/report" >>"$logs/evaluate.log" 2>&1
  tail -n 5 "$logs/evaluate.log"
  # One archive back: the exported runs, each run's log and state, the schedule's logs.
  (cd "$RUNS" && tar czf "$OUT/gpu_runs.tar.gz" export logs reproduce_cpu/*/log.txt reproduce_cpu/*/run.json reproduce_cpu/*/config.yaml)
  ;;
*)
  echo "unknown stage $stage (check | bench | seeds)" >&2
  exit 2
  ;;
esac
