#!/usr/bin/env bash
# Set up (once) and start the service with the shipped model. SQLite (./facegate.db) unless
# FACEGATE_DATABASE_URL says otherwise; the schema is created or migrated at start-up on SQLite.
#
# uvicorn's own limits, for when nothing stands in front of it: at most FACEGATE_MAX_CONNECTIONS requests in
# flight (more get 503), idle keep-alive connections closed after 5 s, request heads of at most 16 KiB, and
# FACEGATE_SHUTDOWN_SECONDS (20) for requests in flight to finish after SIGTERM. uvicorn has no timeout for a
# slow request head or body: the proxy of docker-compose.yml (deploy/nginx.conf) provides those. The access
# log is facegate's own (with the request id), so uvicorn's is off.
#
# Several worker processes (WEB_CONCURRENCY=N): their metrics are summed through a directory that is emptied
# at each start (PROMETHEUS_MULTIPROC_DIR, a fresh temporary one unless set).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${WEB_CONCURRENCY:-1}" -gt 1 ]; then
    export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$(mktemp -d -t facegate-metrics.XXXXXX)}"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
fi
exec "${FACEGATE_VENV:-.venv}/bin/uvicorn" app.main:app --host "${FACEGATE_HOST:-127.0.0.1}" \
    --port "${FACEGATE_PORT:-8000}" --limit-concurrency "${FACEGATE_MAX_CONNECTIONS:-256}" \
    --timeout-keep-alive 5 --h11-max-incomplete-event-size 16384 \
    --timeout-graceful-shutdown "${FACEGATE_SHUTDOWN_SECONDS:-20}" --no-access-log "$@"
