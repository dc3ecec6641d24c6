"""Replicas: how long a restarted replica takes to rebuild its index, and how fast a change propagates.

    python -m benchmarks.replicas [--templates 100000] [--postgres URL] [--changes 50]

1. Rebuild: a gallery of 100k synthetic templates of the shipped model, in SQLite and in PostgreSQL (a
   scratch database, created and dropped here); the time is the whole start-up read: the change feed's
   position, then every template streamed into one exactly sized matrix.
2. Propagation: two replicas (two runtimes with their own indexes, as two processes would have) on one
   PostgreSQL database. A template written through A (the service's own write path) is timed until B's
   index holds it, and a delete until B's index has dropped it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import runtime
from app.core.config import Settings
from app.gallery import db, repository
from app.gallery.feed import bootstrap
from app.gallery.index import EmbeddingIndex
from benchmarks.common import machine, seed_gallery, unit_vectors
from model.faces.embedder import DEFAULT_MODEL, Embedder

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def scratch_database(admin_url: str, name: str) -> str:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


def rebuild_seconds(url: str, embedder: Embedder, repeats: int = 3) -> tuple[float, int]:
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        index = EmbeddingIndex(embedder.dim, embedder.device)
        with sessions() as session:
            bootstrap(index, session=session, model_id=embedder.model_id)
        times.append(time.perf_counter() - started)
    engine.dispose()
    return float(np.median(times)), len(index)


def propagation_ms(url: str, changes: int) -> tuple[np.ndarray, np.ndarray]:
    settings = Settings(database_url=url, auto_migrate=True, auth=False)
    a, b = runtime.start(settings), runtime.start(settings)
    vectors = unit_vectors(changes, a.service.embedder.dim, seed=7)
    seen, gone = [], []
    try:
        for i, vector in enumerate(vectors):
            employee_id = f"propagation-{i}"
            with a.sessions() as session:
                employee = repository.add_employee(session=session, employee_id=employee_id, name=None)
                repository.set_templates(session=session, employee=employee,
                                         vectors={a.service.model_id: vector})
                session.commit()
                started = time.perf_counter()
            while employee_id not in b.service.index:
                time.sleep(0.0005)
            seen.append((time.perf_counter() - started) * 1e3)
            with a.sessions() as session:
                a.service.delete(session=session, employee_id=employee_id)
                started = time.perf_counter()
            while employee_id in b.service.index:
                time.sleep(0.0005)
            gone.append((time.perf_counter() - started) * 1e3)
    finally:
        a.close()
        b.close()
    return np.array(seen), np.array(gone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", type=int, default=100_000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a URL whose user may create databases")
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    embedder = Embedder.load(DEFAULT_MODEL, "cpu")
    print(f"machine: {machine()}")
    print(f"settings: {args.templates} templates of {embedder.model_id} (D={embedder.dim}); feed poll interval "
          f"{Settings().feed.poll_interval} s; PostgreSQL via {make_url(args.postgres).host}")

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/replicas.db"
        seed_gallery(sqlite, model_id=embedder.model_id, dim=embedder.dim, n=args.templates)
        seconds, n = rebuild_seconds(sqlite, embedder)
        print(f"rebuild, SQLite:     {n} templates in {seconds:.2f} s (median of 3)")

    name = "facegate_bench_replicas"
    url = scratch_database(args.postgres, name)
    try:
        seed_gallery(url, model_id=embedder.model_id, dim=embedder.dim, n=args.templates)
        seconds, n = rebuild_seconds(url, embedder)
        print(f"rebuild, PostgreSQL: {n} templates in {seconds:.2f} s (median of 3)")
        seen, gone = propagation_ms(url, args.changes)
        for what, times in (("enroll", seen), ("delete", gone)):
            print(f"propagation A -> B, {what}: p50 {np.median(times):6.1f} ms  p95 {np.percentile(times, 95):6.1f} ms"
                  f"  max {times.max():6.1f} ms  (n={len(times)}, target: within 1000 ms)")
    finally:
        drop_database(args.postgres, name)


if __name__ == "__main__":
    main()
