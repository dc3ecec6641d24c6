"""The key store's cache: bounded, and a malformed key costs no query."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from app.gallery import db
from app.services.keys import KeyStore, create_key


@pytest.fixture
def gallery(sqlite_url):
    """(sessions, the queries sent so far, a real verify key)."""
    db.migrate(sqlite_url)
    engine = db.make_engine(sqlite_url)
    queries = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(1))
    sessions = db.make_sessionmaker(engine)
    with sessions() as session:
        real, _ = create_key(session, "verify")
    queries.clear()
    yield sessions, queries, real
    engine.dispose()


def test_the_key_cache_is_bounded_and_a_malformed_key_costs_no_query(gallery):
    sessions, queries, real = gallery
    store = KeyStore(sessions, ttl=60, max_entries=500)
    for bad in ("garbage", "fg_" + "a" * 8000, "fg_00000000000g_" + "a" * 43, "fg_000000000000_short", "\0" * 50):
        assert store.check(bad) is None
    assert not queries and len(store) == 0, "a malformed key is refused before any lookup or cache entry"
    for i in range(2000):  # well-formed, unknown ids: each is looked up, and the cache stays bounded
        assert store.check(f"fg_{i:012x}_{'A' * 43}") is None
    assert len(store) == 500 and len(queries) == 2000
    assert store.check(real) is not None and store.check(real).scope == "verify"


def test_a_cached_key_is_answered_without_the_database_and_a_stale_one_is_not(gallery):
    """The gate asks check_cached on its event loop, and check (a query, in a thread) only when that cannot answer."""
    sessions, queries, real = gallery
    store = KeyStore(sessions, ttl=60)
    assert store.check_cached(real) == (False, None) and not queries  # never read: not answered
    assert store.check_cached("garbage") == (True, None)  # malformed: answered, no one
    caller = store.check(real)
    assert caller is not None and len(queries) > 0
    queries.clear()
    assert store.check_cached(real) == (True, caller) and not queries
    wrong_secret = real[:-1] + ("A" if real[-1] != "A" else "B")
    assert store.check_cached(wrong_secret) == (True, None)
    store.ttl = 0.0  # the entry is now stale: the database must be asked again
    assert store.check_cached(real) == (False, None) and not queries
