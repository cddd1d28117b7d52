# sdturbo-serve: SD-turbo on TorchServe as a SageMaker-compatible container (ml.g4dn.2xlarge, T4/sm_75).
#   docker build -t sdturbo-serve .
#   docker run --gpus all -p 8080:8080 -v "$PWD/model-store/sdturbo:/opt/ml/model:ro" sdturbo-serve serve
# No `# syntax=` line: BuildKit's built-in Dockerfile frontend is enough, and the build then needs no
# registry besides the base image's (tests/e2e/test_container_image.py builds this file as it is).
# The model is not in the image: SageMaker copies it from S3 (uncompressed S3Prefix) into /opt/ml/model.
# The handler code travels with the model (the archive folder holds handler/), so the image is only the
# runtime: Python deps, Java, the entrypoint and the /ping plugin.
# The NVIDIA driver comes from the host; the CUDA runtime libraries come with the torch wheel, so the torch
# build's CUDA version must be one the endpoint's driver runs (scripts/gpu_stack.py checks the pairing).

# Any Debian bookworm image with python3.11, venv and apt works; the tests use one made from Debian's packages.
# checkov cannot see through an ARG in FROM: the default below is a fixed tag, never latest.
# checkov:skip=CKV_DOCKER_7: the base image comes from BASE_IMAGE, whose default is a versioned tag
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- plugin: the /ping readiness plugin
FROM ${BASE_IMAGE} AS plugin
# A JDK to compile the plugin against TorchServe's frontend jar; it stays in this stage. Slim images drop
# /usr/share/man, and openjdk's postinst links its man pages there (debuerreotype issue #10): the folder
# must exist or the install fails.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only TorchServe's package, for its frontend jar (setup.cfg's pin, no dependencies: no torch here), with a
# venv's pip (a Debian base's own Python refuses pip installs).
COPY setup.cfg ./
RUN sed -n 's/^[[:space:]]*\(torchserve==[^[:space:]]*\).*/\1/p' setup.cfg > torchserve.txt \
 && python -m venv /opt/pip \
 && /opt/pip/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --target /opt/ts -r torchserve.txt
COPY plugins/ plugins/
RUN mkdir -p /tmp/classes /opt/plugins \
 && find plugins/readiness/src -name '*.java' > /tmp/sources \
 && javac --release 17 -nowarn -d /tmp/classes -cp /opt/ts/ts/frontend/model-server.jar @/tmp/sources \
 && cp -r plugins/readiness/src/main/resources/. /tmp/classes/ \
 && jar cf /opt/plugins/readiness-ping.jar -C /tmp/classes .

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
# Java 17 runtime for TorchServe's frontend; tini as PID 1 forwards SIGTERM to the entrypoint and reaps
# the worker processes TorchServe forks. (man1: as in the plugin stage.)
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/*
# Non-root: the server parses untrusted prompts; it needs no privilege (port 8080, /tmp, read-only
# /opt/ml/model). SageMaker runs images as their USER.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin sdturbo
# The Python environment is installed in this stage, not copied from another: with CUDA torch it is ~6 GB
# unpacked (infra/README.md, Cost), and a copy would be a second ~6 GB layer on the builder's disk, which a
# GitHub-hosted runner (14 GB) does not have.
# torch comes from PyTorch's CUDA 12.6 wheel index. For torch 2.13 PyTorch publishes cu126 (legacy),
# cu130 (stable; PyPI's Linux wheel) and cu132 (experimental), and no cu128 since 2.12 (pytorch/pytorch#178665,
# #187075). CUDA 13 needs an NVIDIA driver >= 580, newer than any inference AMI that AWS provider 5.x accepts;
# cu126 has kernels for the T4 (sm_75) and runs on al2-ami-sagemaker-inference-gpu-3-1 (driver 550, CUDA 12.4)
# through NVIDIA's minor-version compatibility (infra/variables.tf: inference_ami_version). scripts/gpu_stack.py
# checks all three: the build is published for setup.cfg's pin, has the GPU's kernels, and the AMI's driver
# runs it. Tests build with TORCH_INDEX_URL pointing at a local CPU wheel and TORCH_VARIANT=cpu.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_VARIANT=cu126
ENV PATH=/opt/venv/bin:$PATH
# Dependencies before the code, from setup.cfg's exact pins, so code changes do not invalidate this multi-GB
# layer. torch alone from its index (without deps: that index need not mirror them), then every pin from
# PyPI, which also brings torch's own dependencies; `pip check` fails the build if anything is left unmet.
WORKDIR /tmp/pins
COPY setup.cfg pyproject.toml ./
RUN python -m venv /opt/venv \
 && python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print('\n'.join(x for x in c['options']['install_requires'].splitlines() if x.strip()))" > requirements.txt \
 && echo "$(grep '^torch==' requirements.txt)${TORCH_VARIANT:++$TORCH_VARIANT}" > torch.txt \
 && pip install --no-cache-dir --disable-pip-version-check --no-deps --index-url "$TORCH_INDEX_URL" -r torch.txt \
 && pip install --no-cache-dir --disable-pip-version-check -r requirements.txt \
 && pip check \
 && rm -rf /tmp/pins
COPY --from=plugin /opt/plugins /opt/sdturbo/plugins
# The entrypoint, the package it imports (found beside it: no install, no handler/, which travels with the
# model), and config.properties, whose settings the container derives its own from (only its listeners,
# model store and plugins folder differ).
COPY config.properties /opt/sdturbo/config.properties
COPY scripts/serve.py /opt/sdturbo/scripts/serve.py
COPY scripts/sdturbo_ops/ /opt/sdturbo/scripts/sdturbo_ops/
# Only the entrypoint's own SDSERVE_* settings here: SDTURBO_<FIELD> overrides engine settings, and the
# engine refuses any SDTURBO_* variable that names none. The model folder is /opt/ml/model by default.
ENV PYTHONUNBUFFERED=1 \
    SDSERVE_PLUGINS_DIR=/opt/sdturbo/plugins \
    SDSERVE_LOG_DIR=/tmp/sdturbo-logs
USER 1000:1000
WORKDIR /home/sdturbo
EXPOSE 8080
# Model load + warm-up on a T4 takes tens of seconds; /ping is 503 until then, so give it time.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4).status != 200)"]
ENTRYPOINT ["/usr/bin/tini", "--", "python", "/opt/sdturbo/scripts/serve.py"]
CMD ["serve"]
