"""The CNN face detector in a process of its own, for a server.

dlib's own CNN held Python's GIL for the whole of a detection, 0.6 s and more, and stalled every thread of the
server's process while it ran: the cause, once, of the server's 1-2.5 s tail. Its PyTorch port
(model.faces.mmod) takes 25-60 ms and lets go of the GIL while it computes, but a fallback still belongs apart:
the wait of a request is bounded by `timeout` (the queue included), a flood of faceless photos queues at most
`max_waiting` detections before the next ones are skipped, and a child that dies takes no request with it. A
skipped or late fallback finds no face: the photo is refused as one without a face (422 no_face), never a 5xx.
The child loads torch: about 310 MB of private memory (dlib's detector alone took 68 MB).

Research and command-line tools call the detector in their own process (FacePipeline's default).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Literal

import numpy as np
import torch

from model.faces.children import end_with
from model.faces.pipeline import Detection, _cnn_detector

log = logging.getLogger(__name__)

# What became of one fallback: a face found, none, skipped because `max_waiting` were already queued,
# abandoned after `timeout`, or lost with a child that died (it is restarted for the next one).
Outcome = Literal["found", "none", "busy", "timeout", "failed"]

_detector = None  # the child's
# Detections queued before the next is skipped: 8 at 25-60 ms each wait at most about 0.5 s, within the default
# 1 s budget (dlib's own detector, at 0.4-0.7 s, allowed 3). A liveness burst asks for two at once.
MAX_WAITING = 8
WARM_UP_SIDE = 320  # the blank image of the warm-up detection: about the size the budget scales photos to


def _start_child(parent: int) -> None:
    """`parent`: the server's pid; the child ends with it (a server killed outright cannot stop it)."""
    global _detector
    end_with(parent)
    torch.set_num_threads(1)
    _detector = _cnn_detector()


def _warm_up() -> None:
    """One detection on a blank image: the detector's first one costs a second more than the next ones."""
    _detector(np.zeros((WARM_UP_SIDE, WARM_UP_SIDE, 3), dtype=np.uint8))


def _detect_in_child(image: np.ndarray) -> list[Detection]:
    return _detector(image)


class CnnProcess:
    """A callable FacePipeline takes as its CNN: image -> detections, in a child process. Thread-safe."""

    def __init__(self, timeout: float = 1.0, max_waiting: int = MAX_WAITING,
                 observe: Callable[[Outcome], None] | None = None) -> None:
        self.timeout, self.max_waiting = timeout, max_waiting
        self._observe = observe or (lambda outcome: None)
        self._lock = threading.Lock()
        self._waiting = 0  # detections submitted and not finished, abandoned ones included
        self._closed = False
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn: a fork of a threaded server could copy a held lock into the child
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_child,
                                   initargs=(os.getpid(),))
        self._started = pool.submit(_warm_up)  # start the child now, not on the first hard photo
        return pool

    def wait_started(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until the child has loaded the detector: a photo sent before that
        would spend its budget waiting for the child's start-up and be answered as one without a face. Whether
        it started."""
        try:
            self._started.result(timeout=timeout)
        except (FutureTimeout, BrokenProcessPool):
            log.warning("the CNN detector's process has not started within %.0f s", timeout)
            return False
        return True

    @property
    def waiting(self) -> int:
        """Detections submitted and not finished, abandoned ones included."""
        return self._waiting

    def __call__(self, image: np.ndarray) -> list[Detection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the CNN process is closed")
            if self._waiting >= self.max_waiting:
                self._observe("busy")
                return []
            pool = self._pool
            try:
                future = pool.submit(_detect_in_child, image)
            except BrokenProcessPool:
                self._restart(pool)
                self._observe("failed")
                return []
            self._waiting += 1
            future.add_done_callback(self._finished)
        try:
            found = future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()  # if it has not started; otherwise the child finishes it, and its answer is dropped
            self._observe("timeout")
            return []
        except BrokenProcessPool:
            with self._lock:
                self._restart(pool)
            self._observe("failed")
            return []
        self._observe("found" if found else "none")
        return found

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._waiting -= 1

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        """Under the lock: the child of `broken` died (killed, out of memory); the next detection gets a new
        one, unless another thread has already started it."""
        if self._closed or self._pool is not broken:
            return
        log.error("the CNN detector's process died; starting another")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()

    def close(self) -> None:
        """Stop the child, after the detection it may be running (at most the budget's time)."""
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)
