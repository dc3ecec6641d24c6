"""The published OpenAPI document and the server agree: schemathesis (a third-party, schema-driven fuzzer, from
PyPI) runs against a live server on each database, deterministically and within a bounded time, with every one
of its checks; tests/schemathesis.toml lists the only answers it allows beyond the schema's, each with its
reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.live import live_server

CONFIG = REPO / "tests" / "schemathesis.toml"


def test_the_server_keeps_the_contract_its_openapi_document_publishes(database_url, tmp_path):
    st = Path(sys.executable).with_name("st")
    with live_server(database_url, log=tmp_path / "server.log") as server:
        run = subprocess.run([str(st), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
                              "-H", f"X-API-Key: {server.keys['admin']}", "--max-examples", "30", "--workers", "2",
                              "--generation-deterministic", "--request-timeout", "60", "--no-color"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
