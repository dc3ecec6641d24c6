"""Write docs/configuration.md: every environment variable facegate reads, from the code that reads it.

    .venv/bin/python scripts/configuration_doc.py            # rewrite the page
    .venv/bin/python scripts/configuration_doc.py --check    # exit 1 if the page is not what this writes

The service's settings come from `app.core.config.Settings` itself: each field's variable, type, default and
the comment written above it. The few variables read elsewhere (the serve script, metrics, the test suite)
are listed in OUTSIDE_SETTINGS below, beside the file that reads each. tests/core/test_configuration.py fails
when the page is stale, or when any FACEGATE_ variable in the code is missing from it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.config import PREFIX, Settings  # noqa: E402 - after the path is set

PAGE = ROOT / "docs" / "configuration.md"
CONFIG_SOURCE = ROOT / "app" / "core" / "config.py"

# (variable, default, read by, what it does)
OUTSIDE_SETTINGS = [
    ("FACEGATE_HOST", "127.0.0.1", "scripts/serve.sh", "the address uvicorn listens on"),
    ("FACEGATE_PORT", "8000", "scripts/serve.sh", "the port uvicorn listens on"),
    ("FACEGATE_MAX_CONNECTIONS", "256", "scripts/serve.sh",
     "requests in flight before uvicorn answers 503 (`--limit-concurrency`)"),
    ("FACEGATE_SHUTDOWN_SECONDS", "20", "scripts/serve.sh",
     "after SIGTERM, how long requests in flight may take to finish"),
    ("WEB_CONCURRENCY", "1", "scripts/serve.sh", "uvicorn worker processes; their metrics are summed"),
    ("PROMETHEUS_MULTIPROC_DIR", "a fresh temporary folder", "scripts/serve.sh, app/core/metrics.py",
     "where several workers' metrics meet; emptied at each start"),
    ("FACEGATE_VENV", ".venv", "scripts/setup.sh, serve.sh, test.sh", "the virtual environment the scripts use"),
    ("FACEGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test", "tests/conftest.py",
     "the PostgreSQL database the tests wipe and use (its name must mark it as a test database)"),
    ("FACEGATE_REQUIRE_POSTGRES", "unset", "tests/conftest.py, .ci/run",
     "`1`: an unreachable PostgreSQL fails the tests instead of skipping them"),
    ("FACEGATE_REQUIRE_DATA", "unset", "tests/conftest.py, .ci/run",
     "`1`: missing test photos fail the tests instead of skipping them"),
    ("FACEGATE_REQUIRE_BROWSER", "unset", "tests/browser, .ci/run",
     "`1`: a missing Chromium fails the browser tests instead of skipping them"),
    ("FACEGATE_SHARED_DATA", "../shared/data", "tests/conftest.py", "where the tests find the research photos"),
    ("FACEGATE_CHROMIUM", "/usr/bin/chromium", "tests/browser", "the Chromium the browser tests drive"),
    ("FACEGATE_SCREENSHOTS", "unset", "tests/browser", "a folder: the browser tests save the console's screenshots"),
]


def field_comments() -> dict[tuple[str, str], str]:
    """{(class, field): the comment lines written right above the field, joined}: the field's documentation."""
    lines = CONFIG_SOURCE.read_text().splitlines()
    comments = {}
    for cls in (n for n in ast.parse(CONFIG_SOURCE.read_text()).body if isinstance(n, ast.ClassDef)):
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above, row = [], node.lineno - 2
                while row >= 0 and lines[row].strip().startswith("#"):
                    above.insert(0, lines[row].strip().lstrip("#").strip())
                    row -= 1
                comments[cls.name, node.target.id] = " ".join(above)
    return comments


def settings_rows() -> list[tuple[str, str, str, str]]:
    """(variable, where in Settings, default, what it does) of every setting, group by group."""
    comments = field_comments()
    rows = []
    for name, field in Settings.model_fields.items():
        if name not in Settings.groups():
            rows.append((PREFIX + name.upper(), name, default_of(field),
                         field.description or comments.get(("Settings", name), "")))
    for group_name, group in Settings.groups().items():
        for name, variable_name in group.variables().items():
            field = group.model_fields[name]
            rows.append((PREFIX + variable_name, f"{group_name}.{name}", default_of(field),
                         field.description or comments.get((group.__name__, name), "")))
    return rows


def default_of(field) -> str:  # noqa: ANN001 - a pydantic FieldInfo
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, Path):
        return str(value.relative_to(ROOT)) if value.is_relative_to(ROOT) else str(value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:_}".replace("_", ",") if isinstance(value, int) else str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    rows = [f"| `{variable_name}` | `{where}` | `{cell(default)}` | {cell(what)} |"
            for variable_name, where, default, what in settings_rows()]
    outside = [f"| `{name}` | `{cell(default)}` | {cell(where)} | {cell(what)} |"
               for name, default, where, what in OUTSIDE_SETTINGS]
    return "\n".join([
        "# Configuration",
        "",
        "Generated by `.venv/bin/python scripts/configuration_doc.py` from `app/core/config.py`; do not edit by hand.",
        "How the decision settings act is in [decisions.md](decisions.md), the quality thresholds' measurements in",
        "[enrollment.md](enrollment.md).",
        "",
        "## The service's settings (`app.core.config.Settings`: environment variables, or a `.env` file)",
        "",
        "Each variable is also accepted as a keyword argument, lower case without the prefix",
        "(`Settings(quality_max_yaw=25)`); the code reads it where the second column says",
        "(`settings.quality.max_yaw`).",
        "",
        "| variable | in Settings | default | what it does |",
        "|---|---|---|---|",
        *rows,
        "",
        "## Read outside Settings",
        "",
        "| variable | default | read by | what it does |",
        "|---|---|---|---|",
        *outside,
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run scripts/configuration_doc.py")
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
