# orbit: every command a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
INFRA_VENV := .venv-infra
PY := $(VENV)/bin/python
INFRA_PY := $(INFRA_VENV)/bin/python
STAMP := $(VENV)/.orbit-installed
INFRA_STAMP := $(INFRA_VENV)/.orbit-installed
LABEL_VENV := .venv-label
LABEL_STAMP := $(LABEL_VENV)/.orbit-installed
# Debian's chromium serves the labelling browser test; elsewhere (macOS) that test is skipped (linux_only).
CHROMIUM := $(if $(and $(filter Linux,$(shell uname -s)),$(shell command -v apt-get)),/usr/bin/chromium)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export BENTOML_HOME ?= $(CURDIR)/.orbit/bentoml
export BENTOML_DO_NOT_TRACK ?= true
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
# gcsfs otherwise probes the bucket type over gRPC and waits 60 s against the emulator.
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT := false

.PHONY: help setup setup-infra crd-schemas config-docs data bucket-start bucket-stop repro push pull metrics bento serve demo \
        test test-main test-infra bench-train bench-serve bench-novelty plan lint clean image \
        setup-label label label-stop label-import label-export label-demo \
        drift bench-monitor monitor-demo

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) local/supported.py
	@echo "==> creating $(VENV) (TensorFlow, DVC, BentoML: about a minute the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[ml,serving,monitor,test,dev]'
	@touch $@

$(INFRA_STAMP): pyproject.toml
	@$(PYTHON) local/supported.py
	@echo "==> creating $(INFRA_VENV) (Pulumi SDK, pulumi-gcp, pulumi-kubernetes, policy SDK)"
	@test -x $(INFRA_PY) || $(PYTHON) -m venv $(INFRA_VENV)
	@$(INFRA_PY) -m pip install --quiet --upgrade pip
	@$(INFRA_PY) -m pip install --quiet -e '.[infra,test]'
	@touch $@

# checkov pins packaging<24, which neither environment can hold (pytest, pulumi): it gets its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.orbit-installed
$(CHECKOV_STAMP): infra/checkov-requirements.txt
	@echo "==> creating $(CHECKOV_VENV) (checkov, for the rendered Kubernetes objects)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet -r infra/checkov-requirements.txt
	@touch $@

K8S_SCHEMAS := tools/k8s-schemas
K8S_SCHEMAS_STAMP := $(K8S_SCHEMAS)/node_modules/.orbit-installed
$(K8S_SCHEMAS_STAMP): $(K8S_SCHEMAS)/package.json
	@echo "==> installing the schemas of the Gateway API and GKE custom resources (npm, exact versions)"
	@npm install --prefix $(K8S_SCHEMAS) --no-audit --no-fund --no-package-lock --ignore-scripts --loglevel=error
	@touch $@

setup: $(STAMP) ## create .venv with everything training, serving and the tests need

setup-infra: $(INFRA_STAMP) ## create .venv-infra for the Pulumi program and its policy pack

crd-schemas: $(K8S_SCHEMAS_STAMP) ## npm packages that validate the Gateway API and GKE objects (tests/infra)

# DATA_SOURCE=folder|url|synthetic overrides data.source of params.yaml for `make data` and `make demo`.
DATA_SOURCE ?=
SOURCE_ARG := $(if $(DATA_SOURCE),--source $(DATA_SOURCE))

data: $(STAMP) ## get data/raw (source in params.yaml, or DATA_SOURCE=), validate it and track it with DVC
	$(PY) -m ml.data fetch $(SOURCE_ARG)
	dvc add data/raw

bucket-start: $(STAMP) ## start the emulated GCS bucket on loopback and point the DVC remote at it
	$(PY) -m local.bucket start

bucket-stop: $(STAMP) ## stop the emulated bucket that bucket-start started
	$(PY) -m local.bucket stop

repro: $(STAMP) ## run the pipeline (prepare -> train -> evaluate); runs only what changed
	dvc repro

push: $(STAMP) ## upload data and model to the DVC remote
	dvc push

pull: $(STAMP) ## download data and model from the DVC remote
	dvc pull

metrics: $(STAMP) ## show the metrics of the workspace
	dvc metrics show

bento: $(STAMP) ## import the trained model into BentoML and build the bento
	$(PY) -m serving.package --if-needed
	$(PY) -m serving.build

# `make serve` records every prediction in this folder (read it with `make drift ARGS="--log .orbit/prediction-log
# --model TAG --last 200"`); ORBIT_PREDICTION_LOG=gs://BUCKET writes to a bucket, ORBIT_PREDICTION_LOG= turns it off.
ORBIT_PREDICTION_LOG ?= .orbit/prediction-log

serve: $(STAMP) ## serve the latest model on 127.0.0.1:3000 (prediction log in .orbit/prediction-log)
	$(PY) -m serving.package --if-needed
	ORBIT_PREDICTION_LOG="$(ORBIT_PREDICTION_LOG)" bentoml serve serving.service:PlanetClassifier --host 127.0.0.1 --port 3000

image: $(STAMP) ## the bento as an OCI image: buildah build, local registry, podman run, smoke test (root, Debian)
	$(PY) -m local.image

demo: $(STAMP) ## the whole local loop: data, bucket, pipeline, push, serve, predict (DATA_SOURCE=synthetic: no data needed)
	$(PY) -m local.demo $(SOURCE_ARG)

test: $(STAMP) $(INFRA_STAMP) $(K8S_SCHEMAS_STAMP) $(CHECKOV_STAMP) $(LABEL_STAMP) $(CHROMIUM) ## the whole test suite
	$(PY) -m pytest tests --ignore=tests/infra
	$(INFRA_PY) -m pytest tests/infra

test-main: $(STAMP) $(LABEL_STAMP) $(CHROMIUM) ## the suite of .venv only (ml, serving, ci, local)
	$(PY) -m pytest tests --ignore=tests/infra

test-infra: $(INFRA_STAMP) $(K8S_SCHEMAS_STAMP) $(CHECKOV_STAMP) ## the suite of .venv-infra only (Pulumi program and policy pack)
	$(INFRA_PY) -m pytest tests/infra

bench-train: $(STAMP) ## pipeline on the real data over 3 seeds: accuracy, time, memory
	$(PY) bench/bench_train.py

bench-serve: $(STAMP) ## load test of the real server at concurrency 1, 16, 64 against a guide-style baseline
	$(PY) bench/bench_serve.py

bench-novelty: $(STAMP) ## unknown-image detector on the real data vs max-softmax: AUROC, flagged shares, cost
	$(PY) bench/bench_novelty.py

drift: $(STAMP) ## drift check of the logged predictions (ARGS="--log gs://BUCKET --last 500 --json")
	$(PY) -m monitor.drift $(ARGS)

bench-monitor: $(STAMP) ## drift check on real windows (false alarms, shifts found) and the cost of logging
	$(PY) bench/bench_monitor.py $(ARGS)

monitor-demo: $(STAMP) ## bucket + server with the prediction log, known traffic (no drift), dwarf planets (drift)
	$(PY) -m local.monitor_demo

STACK ?= dev
plan: $(INFRA_STAMP) ## what a stack would create (STACK=dev|prod, TAG=<sha>: a release), from mocks, not `pulumi preview`
	$(INFRA_PY) -m infra.plan --stack $(STACK) $(if $(TAG),--image-tag $(TAG))

config-docs: $(INFRA_STAMP) ## regenerate the config key table (docs/infra.md) and Pulumi.yaml's config: from infra/config.py
	$(INFRA_PY) -m infra.config_docs

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

clean: ## remove local state (.orbit: emulated bucket, BentoML store); keeps data and environments
	-$(PY) -m local.bucket stop
	rm -rf .orbit

# --- labelling loop (docs/labeling.md) ---------------------------------------------------------------
$(LABEL_STAMP): labeling/requirements-label-studio.txt | $(STAMP)
	@echo "==> creating $(LABEL_VENV) (Label Studio and only it: about 1 GB, a minute the first time)"
	@test -x $(LABEL_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_VENV)
	@$(LABEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(LABEL_VENV)/bin/python -m pip install --quiet -r labeling/requirements-label-studio.txt
	@$(PY) -m labeling.service template
	@touch $@

# Debian's chromium for the browser test; installed only when missing (needs root, as CI is).
$(CHROMIUM):
	@echo "==> installing Debian's chromium for the labelling browser test"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

setup-label: $(LABEL_STAMP) ## create .venv-label with Label Studio (kept apart from .venv)

label: $(STAMP) $(LABEL_STAMP) ## start Label Studio on 127.0.0.1:8080 and create/update the project
	$(PY) -m labeling start

label-stop: $(STAMP) ## stop the Label Studio that `make label` started
	$(PY) -m labeling stop

FOLDER ?= ../shared/data/planets/extra-data/extra-classes
label-import: $(STAMP) ## tasks with the served model's pre-annotations from FOLDER (needs make serve)
	$(PY) -m labeling import --folder $(FOLDER)

label-export: $(STAMP) ## completed annotations into data/raw (provenance), dvc add, counts before/after
	$(PY) -m labeling export

label-demo: $(STAMP) $(LABEL_STAMP) ## the whole labelling loop on the dwarf planets, start to finish
	$(PY) -m labeling.demo
