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
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export BENTOML_HOME ?= $(CURDIR)/.orbit/bentoml
export BENTOML_DO_NOT_TRACK ?= true
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
# gcsfs otherwise probes the bucket type over gRPC and waits 60 s against the emulator.
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT := false

.PHONY: help setup setup-infra data bucket-start bucket-stop repro push pull metrics bento serve demo \
        test test-main test-infra bench-train bench-serve plan lint clean image \
        drift bench-monitor

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) (TensorFlow, DVC, BentoML: about a minute the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[ml,serving,test,dev]'
	@touch $@

$(INFRA_STAMP): pyproject.toml
	@echo "==> creating $(INFRA_VENV) (Pulumi SDK, pulumi-gcp, pulumi-kubernetes, policy SDK)"
	@test -x $(INFRA_PY) || $(PYTHON) -m venv $(INFRA_VENV)
	@$(INFRA_PY) -m pip install --quiet --upgrade pip
	@$(INFRA_PY) -m pip install --quiet -e '.[infra,test]'
	@touch $@

setup: $(STAMP) ## create .venv with everything training, serving and the tests need

setup-infra: $(INFRA_STAMP) ## create .venv-infra for the Pulumi program and its policy pack

data: $(STAMP) ## get data/raw (source in params.yaml), validate it and track it with DVC
	$(PY) -m ml.data fetch
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

serve: $(STAMP) ## serve the latest model on 127.0.0.1:3000
	$(PY) -m serving.package --if-needed
	bentoml serve serving.service:PlanetClassifier --host 127.0.0.1 --port 3000

image: $(STAMP) ## the bento as an OCI image: buildah build, local registry, podman run, smoke test (root, Debian)
	$(PY) -m local.image

demo: $(STAMP) ## the whole local loop: data, bucket, pipeline, push, serve, predict
	$(PY) -m local.demo

test: $(STAMP) $(INFRA_STAMP) ## the whole test suite
	$(PY) -m pytest tests --ignore=tests/infra
	$(INFRA_PY) -m pytest tests/infra

test-main: $(STAMP) ## the suite of .venv only (ml, serving, ci, local)
	$(PY) -m pytest tests --ignore=tests/infra

test-infra: $(INFRA_STAMP) ## the suite of .venv-infra only (Pulumi program and policy pack)
	$(INFRA_PY) -m pytest tests/infra

bench-train: $(STAMP) ## pipeline on the real data over 3 seeds: accuracy, time, memory
	$(PY) bench/bench_train.py

bench-serve: $(STAMP) ## load test of the real server at concurrency 1, 16, 64 against a guide-style baseline
	$(PY) bench/bench_serve.py

drift: $(STAMP) ## drift check of the logged predictions (ARGS="--log gs://BUCKET --last 500 --json")
	$(PY) -m monitor.drift $(ARGS)

bench-monitor: $(STAMP) ## drift check on real windows (false alarms, shifts found) and the cost of logging
	$(PY) bench/bench_monitor.py $(ARGS)

STACK ?= dev
plan: $(INFRA_STAMP) ## what a stack would create (STACK=dev|prod), rendered from mocks (not `pulumi preview`)
	$(INFRA_PY) -m infra.plan --stack $(STACK)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

clean: ## remove local state (.orbit: emulated bucket, BentoML store); keeps data and environments
	-$(PY) -m local.bucket stop
	rm -rf .orbit
