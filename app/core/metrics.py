"""Prometheus metrics (prometheus-client), served at GET /metrics to a key of scope `metrics` or `admin`.

One process: the client's default registry, with its process and Python collectors. Several worker
processes (uvicorn --workers, or WEB_CONCURRENCY): scripts/serve.sh points PROMETHEUS_MULTIPROC_DIR at an
empty directory before the workers start, every worker writes its values there, and whichever worker
answers a scrape sums them up (the client's multiprocess mode). The gauges say how they combine across
workers: the audit queue adds up, the index and the feed report the worst worker. Several replicas are
several scrape targets; Prometheus tells them apart by `instance`.

Names follow Prometheus' conventions: a unit suffix, `_total` on counters, labels of bounded cardinality
(a route's template such as /employees/{employee_id}, never the path itself).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

REQUEST_SECONDS = Histogram(
    "facegate_http_request_duration_seconds", "Time from a request's head to its answer's last byte.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DECISIONS = Counter(
    "facegate_decisions_total",
    "Audited outcomes by action: enrolled, replaced, deleted, match, no_match, unknown, or the error code of a "
    "refusal (unauthorized, no_face, too_many_attempts...).",
    ["action", "outcome"],
)
STAGE_SECONDS = Histogram(
    "facegate_stage_seconds", "Time of one stage of a photo's way to a decision.", ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FALLBACKS = Counter(
    "facegate_detect_fallbacks_total",
    "Photos where HOG found no face and the CNN detector looked again, by outcome: found, none, busy (too many "
    "already waiting: skipped), timeout (past FACEGATE_FALLBACK_SECONDS), failed (its process died). Their time "
    "is facegate_stage_seconds{stage=\"detect_fallback\"}.",
    ["outcome"],
)
MICRO_BATCH_FACES = Histogram(
    "facegate_micro_batch_faces", "Faces per forward pass of the micro-batcher (FACEGATE_MICRO_BATCH).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
TEMPLATES = Gauge("facegate_index_templates", "Templates in the in-memory index: one per employee.",
                  multiprocess_mode="livemin")
AUDIT_SPOOL_BYTES = Gauge("facegate_audit_spool_bytes", "Audit rows waiting in the local spool for the database, "
                          "in bytes.", multiprocess_mode="livesum")
AUDIT_ACCEPTING = Gauge("facegate_audit_accepting", "1 while decisions are accepted; 0 while the audit spool is full "
                        "and the database away (503 audit_unavailable).", multiprocess_mode="livemin")
LOCKOUT_KEY_ALARMS = Counter("facegate_lockout_key_alarms_total", "Failed verifications by a key past its per-key "
                             "limit (FACEGATE_VERIFY_MAX_FAILURES_PER_KEY), with the limit an alarm.")
GROUPS = Gauge("facegate_groups", "Groups (a door's people) in this replica's index.", multiprocess_mode="livemin")
LARGEST_GROUP = Gauge("facegate_largest_group_members", "Members of the largest group.", multiprocess_mode="livemin")
STALE_TEMPLATES = Gauge("facegate_stale_templates",
                        "Templates made by another model than the one serving: their employees cannot be verified "
                        "until they are re-embedded or enroll again.", multiprocess_mode="livemax")
FEED_LAG_SECONDS = Gauge("facegate_feed_lag_seconds",
                         "Seconds since this replica last read the whole change feed (grows while the database is "
                         "away).", multiprocess_mode="livemax")
FEED_LAG_ROWS = Gauge("facegate_feed_lag_rows",
                      "Changes that the feed's last pass found unapplied, plus numbers still awaited (commits in "
                      "flight).", multiprocess_mode="livemax")
AUDIT_QUEUED = Gauge("facegate_audit_queue_rows", "Audit rows waiting to be written.", multiprocess_mode="livesum")
AUDIT_DROPPED = Counter("facegate_audit_dropped_rows_total",
                        "Audit rows lost to a full queue or a failed insert (each one is also logged).")
# An info metric by the usual convention (constant 1, the facts as labels): the client's Info type has no
# multiprocess mode.
MODEL_INFO = Gauge("facegate_model_info", "The model serving: its id, test-time augmentation and device.",
                   ["model_id", "augment", "device"], multiprocess_mode="livemax")


def stage_timer(stage: str) -> AbstractContextManager[object]:
    """Times the block as one observation of facegate_stage_seconds{stage}."""
    return STAGE_SECONDS.labels(stage).time()


def observe_fallback(outcome: str) -> None:
    """model.faces.fallback.CnnProcess reports each fallback here."""
    FALLBACKS.labels(outcome).inc()


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Forget a worker's live gauges when it stops (multiprocess mode; its counters stay in the sums)."""
    if MULTIPROCESS:
        _multiprocess.mark_process_dead(pid)
