"""Engine, sessions and schema migration."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

REPO_ROOT = Path(__file__).resolve().parents[2]


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # Deleted rows are overwritten with zeros, not left in free pages: a deleted employee's stored
            # photo (encrypted) and templates leave the file at the next checkpoint.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()
            # SQLite's lower() folds ASCII only: searches by name use Python's (app.gallery.repository).
            connection.create_function("unicode_lower", 1, _unicode_lower, deterministic=True)

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def open_gallery(url: str, *, migrate_first: bool) -> tuple[Engine, sessionmaker[Session]]:
    """The one way to open the gallery, for the service and the command-line tools alike: the schema migrated
    first when asked (the SQLite default), then an engine and its sessions. The caller disposes the engine."""
    if migrate_first:
        migrate(url)
    engine = make_engine(url)
    return engine, make_sessionmaker(engine)
