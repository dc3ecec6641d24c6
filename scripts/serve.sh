#!/usr/bin/env bash
# Set up (once) and start the service with the shipped model. SQLite (./facegate.db) unless
# FACEGATE_DATABASE_URL says otherwise; the schema is created or migrated at start-up on SQLite.
#
# uvicorn's own limits, for when nothing stands in front of it: at most FACEGATE_MAX_CONNECTIONS requests in
# flight (more get 503), idle keep-alive connections closed after 5 s, request heads of at most 16 KiB, and
# 20 s for requests in flight to finish at shutdown. uvicorn has no timeout for a slow request head or body:
# the proxy of docker-compose.yml (deploy/nginx.conf) provides those.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${FACEGATE_VENV:-.venv}/bin/uvicorn" app.main:app --host "${FACEGATE_HOST:-127.0.0.1}" \
    --port "${FACEGATE_PORT:-8000}" --limit-concurrency "${FACEGATE_MAX_CONNECTIONS:-256}" \
    --timeout-keep-alive 5 --h11-max-incomplete-event-size 16384 --timeout-graceful-shutdown 20 "$@"
