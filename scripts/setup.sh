#!/usr/bin/env bash
# Create .venv and install facegate into it: `scripts/setup.sh` for serving, `scripts/setup.sh --dev` for
# tests and training tools. Run again, it does nothing unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FACEGATE_VENV:-.venv}"
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
stamp="$venv/.facegate-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)$extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".$extras"
echo "$want" > "$stamp"
