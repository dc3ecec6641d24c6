#!/usr/bin/env bash
# Set up (once) and run the whole test suite: lint, then pytest. PostgreSQL tests use
# FACEGATE_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) and skip if it is
# unreachable, unless FACEGATE_REQUIRE_POSTGRES=1 (CI). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
venv="${FACEGATE_VENV:-.venv}"
"$venv/bin/ruff" check app model tests benchmarks scripts
"$venv/bin/python" -m pytest "$@"
