"""The key store's cache: bounded, and a malformed key costs no query."""

from __future__ import annotations

from sqlalchemy import event

from app.services.keys import create_key


def test_the_key_cache_is_bounded_and_a_malformed_key_costs_no_query(sqlite_url):
    from app.gallery import db
    from app.services.keys import KeyStore

    db.migrate(sqlite_url)
    engine = db.make_engine(sqlite_url)
    queries = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(1))
    sessions = db.make_sessionmaker(engine)
    with sessions() as session:
        real, _ = create_key(session, "verify")
    store = KeyStore(sessions, ttl=60, max_entries=500)
    queries.clear()
    for bad in ("garbage", "fg_" + "a" * 8000, "fg_00000000000g_" + "a" * 43, "fg_000000000000_short", "\0" * 50):
        assert store.check(bad) is None
    assert not queries and len(store) == 0, "a malformed key is refused before any lookup or cache entry"
    for i in range(2000):  # well-formed, unknown ids: each is looked up, and the cache stays bounded
        assert store.check(f"fg_{i:012x}_{'A' * 43}") is None
    assert len(store) == 500 and len(queries) == 2000
    assert store.check(real) is not None and store.check(real).scope == "verify"
    engine.dispose()
