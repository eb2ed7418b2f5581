#!/bin/sh
# Container entrypoint of the fuxiops images: check the role's settings (exit 2 naming each missing or
# wrong one), then exec the role's process so that it receives the container's signals.
# Usage: entrypoint.sh ROLE [extra arguments]; ROLE defaults to $FUXIOPS_ROLE; anything else is exec'd as is.
set -eu

role="${1:-${FUXIOPS_ROLE:-api}}"
[ $# -gt 0 ] && shift
export FUXIOPS_ROLE="$role"

case "$role" in
  api)
    fuxiops stack check api
    # Several uvicorn workers share their Prometheus metrics through files; start from an empty folder.
    export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/fuxiops-prometheus}"
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    exec fuxiops serve --host "${FUXIOPS_API__HOST:-0.0.0.0}" --port "${FUXIOPS_API__PORT:-8000}" \
      --workers "${FUXIOPS_API__WORKERS:-4}" "$@"
    ;;
  prefect-server)
    fuxiops stack check prefect-server
    exec prefect server start --host 0.0.0.0 --port "${PREFECT_SERVER_API_PORT:-4200}" "$@"
    ;;
  prefect-worker)
    fuxiops stack check worker
    # Idempotent: create the process work pool and register every deployment spec under /app/deploy.
    fuxiops stack register
    # The worker runs as a single replica: flow runs left Running by its previous container are orphans.
    fuxiops stack recover --pool "${FUXIOPS_WORK_POOL:-fuxiops}"
    exec prefect worker start --pool "${FUXIOPS_WORK_POOL:-fuxiops}" --type process --with-healthcheck \
      --limit "${FUXIOPS_WORKER_LIMIT:-1}" "$@"
    ;;
  dask-scheduler)
    fuxiops stack check dask
    exec dask scheduler --host 0.0.0.0 --port 8786 --dashboard-address :8787 "$@"
    ;;
  dask-worker)
    fuxiops stack check dask
    exec dask worker "${FUXIOPS_DASK__SCHEDULER_ADDRESS:?set FUXIOPS_DASK__SCHEDULER_ADDRESS (tcp://dask-scheduler:8786)}" \
      --nworkers "${DASK_WORKER_PROCESSES:-1}" --nthreads "${DASK_WORKER_THREADS:-2}" \
      --memory-limit "${DASK_WORKER_MEMORY_LIMIT:-4GiB}" --dashboard-address :8788 \
      --local-directory /tmp/dask "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
