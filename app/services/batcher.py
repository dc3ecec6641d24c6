"""Micro-batching: concurrent requests' faces share one forward pass.

On a GPU, one face and sixty-four cost about the same launch overhead, so a request thread hands its
aligned crop to one worker thread and waits. The worker takes the first crop, keeps collecting until
`max_delay_ms` has passed or `max_batch` crops are waiting, embeds them together and hands every request
its own row. A lone request waits at most `max_delay_ms` longer than it would alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from app.core import metrics
from model.faces.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class _Job:
    crop: np.ndarray
    future: Future = field(default_factory=Future)


class MicroBatcher:
    def __init__(self, embedder: Embedder, *, max_batch: int = 64, max_delay_ms: float = 2.0) -> None:
        if max_batch < 1 or max_delay_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_delay_ms >= 0")
        self.embedder, self.max_batch, self.max_delay = embedder, max_batch, max_delay_ms / 1000
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Lock()  # a job is queued before close()'s sentinel, or refused: never after it
        self.batches = self.faces = 0  # what it has done, for /readyz and the benchmarks
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def embed(self, crop: np.ndarray) -> np.ndarray:
        """One face's chip (S, S, 3), or its views (V, S, S, 3), uint8 -> its (D,) unit vector, computed in a
        batch with whoever else is waiting."""
        job = _Job(crop)
        with self._closing:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            self._jobs.put(job)
        return job.future.result()

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._worker.join()

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, deadline = [first], time.perf_counter() + self.max_delay
        while len(jobs) < self.max_batch:
            try:
                job = self._jobs.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            try:
                vectors = self.embedder.embed(np.stack([job.crop for job in jobs]))
            except Exception as exc:  # every waiting request gets the error, the worker carries on
                log.exception("micro-batch of %d failed", len(jobs))
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            self.batches += 1
            self.faces += len(jobs)
            metrics.MICRO_BATCH_FACES.observe(len(jobs))
            for job, vector in zip(jobs, vectors, strict=True):
                job.future.set_result(vector)
        while True:  # a request that raced close() is answered, not left waiting
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_exception(RuntimeError("the micro-batcher is closed"))
