"""docs/configuration.md is generated from the code, current, and names every variable the code reads."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

PAGE = REPO / "docs" / "configuration.md"


def test_the_page_is_what_the_generator_writes():
    result = subprocess.run([sys.executable, "scripts/configuration_doc.py", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_the_code_reads_is_on_the_page():
    tracked = subprocess.run(["git", "ls-files", "app", "model", "tests", "scripts", "benchmarks", ".ci",
                              "Dockerfile", "docker-compose.yml"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    named = set()
    for path in tracked:
        if path.endswith((".py", ".sh", ".yml", "Dockerfile", "run")):
            named |= set(re.findall(r"\bFACEGATE_[A-Z0-9]+(?:_[A-Z0-9]+)*\b", (REPO / path).read_text()))
    documented = set(re.findall(r"`(FACEGATE_[A-Z0-9_]+)`", PAGE.read_text()))
    # FACEGATE_QUALITY_ and the like are prefixes in prose, not variables
    missing = {name for name in named - documented if not name.endswith("_")}
    assert not missing, f"read by the code but not in docs/configuration.md: {sorted(missing)}"


def test_each_setting_has_a_description():
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `")]
    assert rows and all(not line.rstrip().endswith("|  |") for line in rows), "a variable without a description"
