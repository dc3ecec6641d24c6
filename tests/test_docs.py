"""The README is a front door, and every relative link in it and in docs/ leads somewhere."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) < 200


def test_the_packages_import_in_one_direction_without_a_circle():
    result = subprocess.run([sys.executable, "scripts/import_graph.py"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    model_side = [line for line in result.stdout.splitlines() if line.startswith("model")]
    assert model_side and not any("app" in line.split("->")[1] for line in model_side), "model/ imports app/"


def test_every_command_the_manual_names_exists():
    """`python -m X` in README.md or docs/ names a module that runs (model/ and app/ moved their commands)."""
    import importlib.util

    named = {module for page in PAGES for module in re.findall(r"python -m ([\w.]+)", page.read_text())}
    missing = set()
    for module in named - {"pip", "venv", "pytest"}:
        spec = importlib.util.find_spec(module)
        runnable = spec is not None and (spec.submodule_search_locations is None
                                         or importlib.util.find_spec(f"{module}.__main__") is not None)
        if not runnable:
            missing.add(module)
    assert named and not missing, sorted(missing)
