#!/usr/bin/env bash
# Set up (once) and start the service with the shipped model. SQLite (./facegate.db) unless
# FACEGATE_DATABASE_URL says otherwise; the schema is created or migrated at start-up on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${FACEGATE_VENV:-.venv}/bin/uvicorn" app.main:app --host "${FACEGATE_HOST:-127.0.0.1}" \
    --port "${FACEGATE_PORT:-8000}" "$@"
