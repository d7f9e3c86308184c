#!/usr/bin/env bash
# What a lent GPU machine runs for elcl, in stages that each fit one short call:
#
#   scripts/gpu_session.sh check OUT              test suite (CUDA tests included), TF-IDF caches warmed
#   scripts/gpu_session.sh bench OUT              step / curvature benchmarks on CUDA, JSON under OUT
#   scripts/gpu_session.sh seeds OUT DEADLINE_S SEED...
#                                                 more seeds of $CONFIG (default configs/reproduce_cpu.yaml:
#                                                 both orders, single, naive and each penalty on its λ grid),
#                                                 one `elcl sweep`, PAR runs at a time, stopped at
#                                                 DEADLINE_S; finished runs exported under OUT
#
# The corpora come from $ELCL_DATA_DIR, TF-IDF caches go to $ELCL_CACHE_DIR. Runs go to
# $RUNS (default runs_gpu). The benchmark's small runs are GPU-light and CPU-bound, so
# the card is shared by PAR (default 14) processes of one thread each. `elcl sweep`
# trains the first task of each (order, seed) once (the others adopt it), stops the runs
# at the deadline (interrupted) and exports only finished ones (docs/guides/sweeps.md).
# SWEEP_ARGS adds sweep options (e.g. "--backend ray --gpus-per-run 0.07").
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
  seeds=$(IFS=,; echo "$*")
  # shellcheck disable=SC2086
  $PY -m elcl sweep "$CONFIG" --set "seeds=[$seeds]" --set "train.device=$DEVICE" \
    --set "sweep.methods=[${METHODS:-single,naive,ewc,kfac}]" ${EXTRA_SET:-} --output-dir "$RUNS" \
    -j "$PAR" --deadline "${DEADLINE}s" --export "$RUNS/export" ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/schedule.log"
  name=$($PY -c "from elcl.config import load_config; print(load_config('$CONFIG').name)")
  $PY -m elcl evaluate "$RUNS/export" --out "$RUNS/report" >"$OUT/evaluate.log" 2>&1
  tail -n 5 "$OUT/evaluate.log"
  # One archive back: the exported runs, the report, each run's log and state, the sweep's logs.
  (cd "$RUNS" && tar czf "$OUT/gpu_runs.tar.gz" export report "$name"/*/log.txt "$name"/*/run.json "$name"/.sweep)
  ;;
*)
  echo "unknown stage $stage (check | bench | seeds)" >&2
  exit 2
  ;;
esac
