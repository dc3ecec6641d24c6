"""Shared fixtures. Tests that need the research photos in ../shared/data skip cleanly without them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.photos import Photos

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ClientFactory = Callable[..., "TestClient"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEGATE_SHARED_DATA", REPO.parent / "shared" / "data"))
TESTFACES = SHARED_DATA / "testfaces"
# CI has the photos, so there a test that would skip for want of them fails instead.
REQUIRE_DATA = os.environ.get("FACEGATE_REQUIRE_DATA") == "1"


@pytest.fixture(scope="session")
def testfaces() -> Path:
    if not TESTFACES.is_dir():
        if REQUIRE_DATA:
            pytest.fail(f"FACEGATE_REQUIRE_DATA=1 but the face photos are not at {TESTFACES}")
        pytest.skip(f"face photos not found at {TESTFACES}")
    return TESTFACES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, with its archives (lfw-deepfunneled.tar...)."""
    if not (SHARED_DATA / "lfw-deepfunneled.tar").is_file():
        if REQUIRE_DATA:
            pytest.fail(f"FACEGATE_REQUIRE_DATA=1 but the research archives are not in {SHARED_DATA}")
        pytest.skip(f"research archives not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detection and chip cache of the tests: never the developer's."""
    return tmp_path_factory.mktemp("cache")


# --- databases ---------------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("FACEGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# CI sets this so that an unreachable PostgreSQL fails the run instead of skipping its tests.
REQUIRE_POSTGRES = os.environ.get("FACEGATE_REQUIRE_POSTGRES") == "1"


def is_test_database(url: str) -> bool:
    """Only a database whose name says it is for tests may be wiped: `test`, `facegate_test`, `test_2`..."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database or ""
    return name == "test" or name.startswith("test_") or name.endswith("_test")


def _postgres_or_skip() -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    if not is_test_database(POSTGRES_URL):
        pytest.fail(f"FACEGATE_TEST_POSTGRES_URL names {POSTGRES_URL!r}: its schema would be dropped, and its "
                    "database name does not mark it as a test database (test, test_*, *_test)")
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            # A clean database for every test: drop what the last one (or a crashed run) left behind.
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    except OperationalError as exc:
        if REQUIRE_POSTGRES:
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on a fresh SQLite file and once on a clean PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gallery.db'}"
    return _postgres_or_skip()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gallery.db'}"


# --- the app ----------------------------------------------------------------------------------------------

@pytest.fixture
def photos(testfaces: Path) -> Photos:
    return Photos(testfaces)


@pytest.fixture
def make_client(database_url: str, tmp_path: Path) -> Iterator[ClientFactory]:
    """Start the real app (shipped model, real database); `make_client.stop(client)` shuts one down, so that
    a second call is a restart on the same database."""
    # Imported here, not at the top: the import warns about httpx, and pytest's filters apply only in tests.
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app

    started: list[TestClient] = []

    def start(**overrides) -> TestClient:
        overrides.setdefault("auth", False)  # tests/api/test_auth.py turns it on
        # Tests verify many impostors against one employee; tests/api/test_lockout.py turns the lockout on.
        overrides.setdefault("verify_max_failures", 0)
        overrides.setdefault("audit_spool_dir", str(tmp_path / "audit-spool"))  # never the repository's
        settings = Settings(database_url=database_url, auto_migrate=True, **overrides)
        client = TestClient(create_app(settings))
        client.__enter__()
        started.append(client)
        return client

    def stop(client: TestClient) -> None:
        started.remove(client)
        client.__exit__(None, None, None)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for client in reversed(started):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()
