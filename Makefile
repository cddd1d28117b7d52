# sdturbo-serve: every routine task has one entry point here; README, CI and docs use the same commands.
# Every recipe runs under bash -eu -o pipefail. The flags sit in SHELL itself, not in .SHELLFLAGS (GNU make
# 3.82+): macOS ships make 3.81, which ignores .SHELLFLAGS but runs a multi-word SHELL as "SHELL -c LINE".
# Nothing here needs a newer make (tests/repo/test_makefile.py holds that).
SHELL := /bin/bash -eu -o pipefail
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION ?= 3.3.30

# Real model: `make model MODEL=sdxl-turbo` then `make mar MODEL=sdxl-turbo`.
MODEL ?= sd-turbo
MODEL_DIR ?= models/$(MODEL)
ARCHIVE_FORMAT ?= no-archive
# Overrides only: each is unset unless given (`make mar WORKERS=2`), and then the tool's own default holds
# (workers: handler/model-config.yaml; stores, logs and state: scripts/sdturbo_ops/paths.py).
# TorchServe workers per device: the shipped 1 suits a CPU; 2 or more are faster on a CUDA GPU.
WORKERS ?=
# `make model MODEL=sdxl-turbo FP16_FIX_VAE=1` also downloads the VAE that decodes SDXL in fp16 (unset: not).
FP16_FIX_VAE ?=
MODEL_STORE ?=
# The tree's paths (the offline tiny models, the demo store, the /ping and /playground plugins), from their one home.
$(foreach assignment,$(shell $(PYTHON) scripts/sdturbo_ops/paths.py --make),$(eval $(assignment)))
PLUGIN_SRC := $(shell find plugins/readiness/src -type f 2>/dev/null)
HANDLER_SRC := $(shell find handler -type f -not -path '*/__pycache__/*' 2>/dev/null)
PLAYGROUND_SRC := $(shell find plugins/playground/src -type f 2>/dev/null)
# `make predict PROMPT="a cat" [OUT=cat.png] [SEED=42]`: the prompt reaches the command through the
# environment, so quotes and other shell characters in it need no escaping.
PROMPT ?=
OUT ?=
SEED ?=
export PROMPT
# Where the server of `make serve`/`serve-tiny` writes its logs, and its workers their state files
# (default: logs/ and build/serve-state/, scripts/local_torchserve.py's).
SERVE_LOGS ?=
SERVE_STATE ?=
# A second server beside the first: `make serve-tiny PORT=8090` listens on 8090-8094 and keeps its TMPDIR, logs
# and state in build/servers/8090/; `make predict PORT=8090` and `make stop PORT=8090` talk to it. Unset:
# config.properties' own ports (8080-8082, gRPC 7070-7071).
PORT ?=
PORT_ARGS = $(if $(PORT),--port $(PORT))
SERVE_ARGS = $(PORT_ARGS) $(if $(SERVE_LOGS),--log-dir $(SERVE_LOGS)) $(if $(SERVE_STATE),--state-dir $(SERVE_STATE))
# Where `make predict` and `make demo` send their request: the server PORT names, or invoke.py's default.
URL_ARGS = $(if $(PORT),--url http://127.0.0.1:$(PORT))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
	  '{ name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1) } \
	   END { format = "  %-" width "s  %s\n"; for (i = 1; i <= NR; i++) printf format, name[i], text[i] }'

# ------------------------------------------------------------------ set-up
$(VENV)/.installed: setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[aws,bench,test]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv with the pinned dependencies

# checkov pins its own boto3/botocore; it lives in a separate virtualenv so it cannot move our pins.
$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

.PHONY: tools
tools: $(TOOLS_VENV)/.installed ## install checkov into .venv-tools

# The image test (tests/e2e/test_container_image.py) runs its own Docker engine and makes its base image with
# mmdebstrap. As root, the missing Debian packages are installed; policy-rc.d stops their postinst from
# starting the system's dockerd, which would switch on the host's ip_forward. Without root the test is
# skipped with the reason (and fails under CI, which must run it).
CONTAINER_TOOLS := dockerd:docker.io mmdebstrap:mmdebstrap nsenter:util-linux

.PHONY: container-tools
container-tools: ## install docker.io and mmdebstrap with apt when missing (as root), for the image test
	@missing=""; for pair in $(CONTAINER_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "note: the image test needs$$missing; install as root" >&2; exit 0; fi; \
	echo "installing$$missing for the image test"; \
	guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	status=0; { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || status=$$?; \
	[ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$status

# The playground's browser test (tests/e2e/test_playground.py) drives Debian's Chromium through its WebDriver,
# and the metadata tests read images with exiftool. As root, the missing packages are installed; without
# root the tests are skipped with the reason (and fail under CI, which must run them).
BROWSER_TOOLS := chromium:chromium chromedriver:chromium-driver exiftool:libimage-exiftool-perl

.PHONY: browser-tools
browser-tools: ## install chromium, chromium-driver and exiftool with apt when missing (as root), for their tests
	@missing=""; for pair in $(BROWSER_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "note: the playground and metadata tests need$$missing; install as root" >&2; exit 0; fi; \
	echo "installing$$missing for the playground and metadata tests"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null

.PHONY: check-java
check-java: ## fail clearly unless Java 17+ is installed (TorchServe's frontend needs it)
	@command -v java >/dev/null || { echo "error: TorchServe needs Java 17 or newer: install a JDK 17 (e.g. apt install openjdk-17-jdk-headless)" >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1); \
	  [ "$${v:-0}" -ge 17 ] || { echo "error: TorchServe needs Java 17 or newer; found '$$v'" >&2; exit 1; }

# A TorchServe endpoint plugin: plugins/$(1)/src compiled against TorchServe's frontend jar, with its resources.
define plugin-jar
	@command -v javac >/dev/null || { echo "error: building the $(1) plugin needs javac (a JDK 17, not only a JRE)" >&2; exit 1; }
	rm -rf build/plugin-classes/$(1) && mkdir -p build/plugin-classes/$(1) $(dir $@)
	javac --release 17 -nowarn -d build/plugin-classes/$(1) \
	  -cp "$$($(PY) -c 'import os, ts; print(os.path.join(os.path.dirname(ts.__file__), "frontend", "model-server.jar"))')" \
	  $(filter %.java,$^)
	cp -r plugins/$(1)/src/main/resources/. build/plugin-classes/$(1)/
	jar cf $@ -C build/plugin-classes/$(1) .
endef

$(PLUGIN_JAR): $(PLUGIN_SRC) | $(VENV)/.installed
	$(call plugin-jar,readiness)

# The playground page (GET /playground on the local server's inference port); only the local server loads it.
$(PLAYGROUND_JAR): $(PLAYGROUND_SRC) | $(VENV)/.installed
	$(call plugin-jar,playground)

.PHONY: plugin
plugin: $(PLUGIN_JAR) $(PLAYGROUND_JAR) ## build the /ping readiness plugin (serve entrypoint) and the /playground page

# ------------------------------------------------------------------ models and archives
$(TINY_SD)/model_index.json: scripts/build_offline_model.py scripts/sdturbo_ops/offline_model.py | $(VENV)/.installed
	$(PY) scripts/build_offline_model.py --size tiny --arch sd --tiny-decoder --out $(TINY_SD) --force

$(TINY_SDXL)/model_index.json: scripts/build_offline_model.py scripts/sdturbo_ops/offline_model.py | $(VENV)/.installed
	$(PY) scripts/build_offline_model.py --size tiny --arch sdxl --out $(TINY_SDXL) --force

.PHONY: tiny-model
tiny-model: $(TINY_SD)/model_index.json $(TINY_SDXL)/model_index.json ## build the offline tiny SD-turbo and SDXL-turbo models

.PHONY: model
model: install ## download the real weights from the Hugging Face Hub into models/$(MODEL), and the tiny decoder (TAESD) into its taesd/ (FP16_FIX_VAE=1: SDXL's fp16 VAE)
	$(PY) scripts/download_model.py --model $(MODEL) --out $(MODEL_DIR) --tiny-decoder $(if $(FP16_FIX_VAE),--fp16-fix-vae)

.PHONY: compiled-kernels
compiled-kernels: install ## on a GPU of the endpoint's type: compile $(MODEL_DIR)'s UNet and decoder into it for $(MODEL)'s endpoint settings (before `make mar`)
	$(PY) scripts/build_compiled_kernels.py --model-dir $(MODEL_DIR) --profile $(MODEL)

.PHONY: mar
mar: install ## package $(MODEL_DIR) into $(MODEL_STORE)/sdturbo with $(MODEL)'s profile (handler/profiles.yaml; ARCHIVE_FORMAT=no-archive|zip-store|default)
	$(PY) scripts/build_archive.py --model-dir $(MODEL_DIR) $(if $(MODEL_STORE),--store $(MODEL_STORE)) \
	  --format $(ARCHIVE_FORMAT) --profile $(MODEL) $(if $(WORKERS),--workers $(WORKERS))

# ------------------------------------------------------------------ serving
# TorchServe runs in the background with config.properties (loopback ports 8080-8082), the /ping plugin
# and its output in logs/; scripts/local_torchserve.py returns once the model is warm, or says why not.
.PHONY: serve
serve: check-java install plugin ## serve the archive `make mar` built (MODEL_STORE=... for another store) in the background; returns once it is warm
	$(PY) scripts/local_torchserve.py start $(if $(MODEL_STORE),--store $(MODEL_STORE)) $(SERVE_ARGS) --timeout 900

# The tiny model's archive, rebuilt only when what goes into it changed: a second `make serve-tiny PORT=...`
# must not replace the folder a running server's workers run in.
$(DEMO_MANIFEST): $(TINY_SD)/model_index.json $(HANDLER_SRC) scripts/build_archive.py scripts/sdturbo_ops/archive.py \
  | $(VENV)/.installed
	$(PY) scripts/build_archive.py --model-dir $(TINY_SD) --store $(DEMO_STORE) >/dev/null

.PHONY: serve-tiny
serve-tiny: check-java install plugin $(DEMO_MANIFEST) ## serve the offline tiny model in the background (make predict, make stop)
	$(PY) scripts/local_torchserve.py start --store $(DEMO_STORE) $(SERVE_ARGS) --timeout 300

.PHONY: predict
predict: install ## ask the running server for an image: make predict PROMPT="a cat" [OUT=cat.png; default image.png] [SEED=42]
	@[ -n "$$PROMPT" ] || { echo 'error: say what to draw: make predict PROMPT="a cat wearing sunglasses"' >&2; exit 2; }
	$(PY) scripts/invoke.py local "$$PROMPT" $(if $(OUT),--out "$(OUT)") $(if $(SEED),--seed $(SEED)) $(URL_ARGS)

.PHONY: stop
stop: ## stop the TorchServe started by `make serve` or `make serve-tiny` (PORT=8090: the one on that port)
	$(PY) scripts/local_torchserve.py stop $(PORT_ARGS)

.PHONY: demo
demo: serve-tiny ## serve the offline tiny model, ask for one image (demo.png), stop
	trap '$(PY) scripts/local_torchserve.py stop $(PORT_ARGS) > /dev/null' EXIT; \
	$(PY) scripts/invoke.py local "a cat wearing sunglasses" --seed 42 --out demo.png $(URL_ARGS)

# ------------------------------------------------------------------ checks
.PHONY: test
test: check-java install tools plugin tiny-model container-tools browser-tools ## run every test: unit, integration (real TorchServe), the built image, infra, lint
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	  if [ $$status -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$status

# The fast lane (tests/README.md): the unit tests alone, no server, container or Terraform; `make test` stays
# the whole suite.
UNIT_TESTS := not integration and not infra and not container and not slow

.PHONY: unit
unit: install tiny-model ## the fast lane, after every edit: unit tests only, no server, container or Terraform
	$(PY) -m pytest -m "$(UNIT_TESTS)" $(PYTEST_ARGS)

.PHONY: infra-test
infra-test: install tools ## only the Terraform, checkov, hadolint and workflow checks
	$(PY) -m pytest -m infra

.PHONY: bench
bench: check-java install tiny-model ## benchmark engine vs served path vs baseline (BENCH_ARGS=...)
	$(PY) scripts/bench.py $(BENCH_ARGS)

.PHONY: soak
soak: check-java install tiny-model ## 10-minute soak at concurrency 64 on the tiny model (SOAK_ARGS=...)
	$(PY) scripts/soak.py $(SOAK_ARGS)

.PHONY: clean
clean: ## remove build outputs (keeps .venv and downloaded models)
	rm -rf build logs demo.png $(or $(MODEL_STORE),$(DEFAULT_MODEL_STORE))/sdturbo $(or $(MODEL_STORE),$(DEFAULT_MODEL_STORE))/*.mar
