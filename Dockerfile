# syntax=docker/dockerfile:1.7
# fuxiops container images. Three final targets:
#   api   the REST API only: core dependencies, no torch, no training or world dependencies
#   cpu   worker image (Prefect server/worker, Dask, cycle): core + ml + world + ops, torch CPU build
#   cuda  cpu plus the CUDA runtime and onnxruntime-gpu, for GPU inference
# Build: docker build --target api -t fuxiops-api .   (and --target cpu / --target cuda)
# No secrets or data are baked in: settings come from the environment (.env.example), data from volumes.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0

# ---------------------------------------------------------------------------------------------------------
# base: the Python runtime, the unprivileged user and the shared environment.
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FUXIOPS_HOME=/data \
    FUXIOPS_DATA__PRODUCTS=/products \
    FUXIOPS_REPO=/app
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libgomp1: OpenMP runtime of numpy/scipy/onnxruntime wheels; tini: reaps the children of the services.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fuxiops \
    && useradd --system --uid 10001 --gid fuxiops --home-dir /home/fuxiops --create-home --shell /usr/sbin/nologin fuxiops \
    && mkdir -p /data /products /app \
    && chown fuxiops:fuxiops /data /products
WORKDIR /app

# ---------------------------------------------------------------------------------------------------------
# source: only what pip needs to build the package (see .dockerignore).
FROM base AS source
COPY pyproject.toml setup.py README.md /app/
COPY fuxiops /app/fuxiops
COPY pipeline /app/pipeline
COPY services /app/services
COPY models /app/models
COPY compression /app/compression
COPY deploy /app/deploy

# ---------------------------------------------------------------------------------------------------------
# build-api: core dependencies only (the API must start without torch).
FROM source AS build-api
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir /app

# ---------------------------------------------------------------------------------------------------------
# build-cpu: the CPU build of torch from the PyTorch CPU index first (an unpinned torch from PyPI is the
# multi-GB CUDA build), then the worker extras, which find torch already satisfied.
FROM source AS build-cpu
ARG TORCH_VERSION
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "/app[ml,world,ops]"

# ---------------------------------------------------------------------------------------------------------
# api: final image of the REST API.
FROM base AS api
COPY --from=build-api /opt/venv /opt/venv
COPY --from=source /app/deploy /app/deploy
ENV FUXIOPS_ROLE=api \
    FUXIOPS_API__HOST=0.0.0.0 \
    FUXIOPS_API__PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "fuxiops.pipeline.stack.healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/deploy/docker/entrypoint.sh"]
CMD ["api"]

# ---------------------------------------------------------------------------------------------------------
# cpu: final worker image (prefect-server, prefect-worker, dask-scheduler, dask-worker roles).
FROM base AS cpu
COPY --from=build-cpu /opt/venv /opt/venv
COPY --from=source /app /app
ENV FUXIOPS_ROLE=prefect-worker \
    PREFECT_HOME=/home/fuxiops/.prefect \
    PREFECT_RESULTS_PERSIST_BY_DEFAULT=true \
    PREFECT_LOCAL_STORAGE_PATH=/data/prefect-results \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule
USER 10001:10001
EXPOSE 4200 8080 8786 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "fuxiops.pipeline.stack.healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/deploy/docker/entrypoint.sh"]
CMD ["prefect-worker"]

# ---------------------------------------------------------------------------------------------------------
# cuda: worker image for NVIDIA GPUs: CUDA + cuDNN runtime, PyPI's CUDA build of torch, onnxruntime-gpu
# in place of onnxruntime (both install the same `onnxruntime` module, so only one may be present).
FROM ${CUDA_IMAGE} AS cuda
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FUXIOPS_HOME=/data \
    FUXIOPS_DATA__PRODUCTS=/products \
    FUXIOPS_REPO=/app \
    FUXIOPS_ROLE=prefect-worker \
    FUXIOPS_MODELS__DEVICE=cuda \
    PREFECT_HOME=/home/fuxiops/.prefect \
    PREFECT_RESULTS_PERSIST_BY_DEFAULT=true \
    PREFECT_LOCAL_STORAGE_PATH=/data/prefect-results \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fuxiops \
    && useradd --system --uid 10001 --gid fuxiops --home-dir /home/fuxiops --create-home --shell /usr/sbin/nologin fuxiops \
    && mkdir -p /data /products /app \
    && chown fuxiops:fuxiops /data /products
WORKDIR /app
COPY --from=source /app /app
ARG TORCH_VERSION
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "/app[ml,world,ops]" \
    && pip uninstall -y onnxruntime \
    && pip install --no-cache-dir "/app[gpu]"
USER 10001:10001
EXPOSE 8080 8786 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "fuxiops.pipeline.stack.healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/deploy/docker/entrypoint.sh"]
CMD ["prefect-worker"]
