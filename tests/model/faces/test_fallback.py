"""The CNN fallback detector in its own process: the same faces as in the caller's, without stalling the caller's
threads, within its time budget, and back after its process dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.faces.decode import decode_image
from model.faces.fallback import CnnProcess
from model.faces.pipeline import FacePipeline
from tests.commands import alive, survivors


@pytest.fixture(scope="module")
def hog_miss(shared_data) -> np.ndarray:
    """An LFW photo where HOG finds no face and the CNN finds one."""
    with tarfile.open(shared_data / "lfw-deepfunneled.tar") as archive:
        data = archive.extractfile("lfw-deepfunneled/Abdoulaye_Wade/Abdoulaye_Wade_0003.jpg").read()
    return decode_image(data, max_pixels=10**7)


@pytest.fixture
def outcomes() -> list[str]:
    return []


@pytest.fixture
def cnn(outcomes):
    process = CnnProcess(timeout=30, observe=outcomes.append)
    yield process
    process.close()


def test_the_child_finds_what_the_callers_own_detector_finds(cnn, hog_miss, outcomes):
    there = FacePipeline(cnn=cnn)
    ours, theirs = FacePipeline().detect(hog_miss), there.detect(hog_miss)
    # the same faces and landmarks; the scores to float rounding (the child computes on one thread)
    assert [replace(face, score=0) for face in theirs] == [replace(face, score=0) for face in ours] != []
    assert [face.score for face in theirs] == pytest.approx([face.score for face in ours], abs=1e-5)
    assert outcomes == ["found"]
    assert there.detect_boxes(np.full((240, 320, 3), 128, np.uint8)) == [] and outcomes == ["found", "none"]


def test_the_callers_other_threads_run_while_the_child_works(cnn, hog_miss):
    """The caller's threads go on while the child detects: this loop spins at least a fifth as fast as alone.
    (dlib's own detector held the GIL for a whole detection: in the caller's process it all but stopped the loop,
    35,000 spins against 3.6 million.)"""
    image, _ = FacePipeline().cnn_input(hog_miss)
    cnn(image)  # the child is up

    def spin(done: threading.Event) -> float:
        spins, started = 0, time.perf_counter()
        while not done.is_set():
            spins += 1
        return spins / (time.perf_counter() - started)

    timer = threading.Timer(0.3, (stop := threading.Event()).set)
    timer.start()
    alone = spin(stop)
    done = threading.Event()
    worker = threading.Thread(target=lambda: ([cnn(image) for _ in range(10)], done.set()))
    worker.start()
    beside = spin(done)
    worker.join()
    assert beside > alone / 5, (beside, alone)


def test_a_detection_past_its_time_is_given_up_and_finds_no_face(hog_miss, outcomes):
    cnn = CnnProcess(timeout=0.01, observe=outcomes.append)
    try:
        assert FacePipeline(cnn=cnn).detect(hog_miss) == [] and outcomes == ["timeout"]
    finally:
        cnn.close()


def test_a_flood_is_skipped_once_enough_detections_wait(hog_miss, outcomes):
    cnn = CnnProcess(timeout=30, max_waiting=1, observe=outcomes.append)
    pipeline = FacePipeline(cnn=cnn)
    try:
        first = threading.Thread(target=pipeline.detect, args=(hog_miss,))
        first.start()
        deadline = time.monotonic() + 10
        while cnn.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert pipeline.detect(hog_miss) == [] and outcomes == ["busy"]
        first.join()
        assert outcomes == ["busy", "found"] and cnn.waiting == 0
    finally:
        cnn.close()


def test_a_dead_child_fails_one_detection_and_the_next_gets_a_new_child(cnn, hog_miss, outcomes):
    pipeline = FacePipeline(cnn=cnn)
    assert pipeline.detect(hog_miss)
    [child] = multiprocessing.active_children()
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert pipeline.detect(hog_miss) == []
    assert pipeline.detect(hog_miss) != []
    assert outcomes == ["found", "failed", "found"]


def test_a_closed_process_refuses_work(cnn, hog_miss):
    cnn.close()
    with pytest.raises(RuntimeError):
        FacePipeline(cnn=cnn).detect(hog_miss)


PARENT = """
import multiprocessing, sys, time
from model.faces.fallback import CnnProcess
if __name__ == "__main__":
    cnn = CnnProcess()
    while not multiprocessing.active_children():
        time.sleep(0.01)
    time.sleep(0.5)
    print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
    time.sleep(60)
"""


def test_the_child_ends_when_its_parent_is_killed_outright(tmp_path):
    """A server killed with SIGKILL cannot stop its CNN process; the child must not outlive it."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[3])
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert children and all(alive(pid) for pid in children)
    finally:
        parent.kill()
        parent.wait()
    assert not survivors(children)
