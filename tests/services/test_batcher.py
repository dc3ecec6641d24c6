"""The micro-batcher gathers concurrent requests into shared forward passes and gives each its own row."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.services.batcher import MicroBatcher
from model.faces.embedder import DEFAULT_MODEL, Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load(DEFAULT_MODEL, "cpu")


def crops(embedder: Embedder, n: int) -> np.ndarray:
    size = embedder.input_size
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_concurrent_requests_share_batches_and_get_their_own_rows(embedder):
    faces = crops(embedder, 48)
    alone = embedder.embed(faces)
    batcher = MicroBatcher(embedder, max_batch=16, max_delay_ms=20)
    try:
        with ThreadPoolExecutor(16) as pool:
            vectors = list(pool.map(batcher.embed, faces))
    finally:
        batcher.close()
    assert np.allclose(np.stack(vectors), alone, atol=1e-5)
    assert batcher.faces == 48
    assert batcher.batches < 48, "some requests must have shared a forward pass"
    assert all(v.shape == (embedder.dim,) for v in vectors)


def test_a_lone_request_is_answered_after_the_deadline(embedder):
    batcher = MicroBatcher(embedder, max_batch=64, max_delay_ms=1)
    try:
        vector = batcher.embed(crops(embedder, 1)[0])
    finally:
        batcher.close()
    assert np.isclose(np.linalg.norm(vector), 1, atol=1e-5)
    assert (batcher.batches, batcher.faces) == (1, 1)


def test_a_failed_batch_fails_its_requests_and_the_worker_goes_on(embedder):
    batcher = MicroBatcher(embedder, max_batch=4, max_delay_ms=1)
    try:
        with pytest.raises(RuntimeError):
            batcher.embed(np.zeros((7, 7, 3), np.uint8))  # the wrong size: the network refuses it
        assert batcher.embed(crops(embedder, 1)[0]).shape == (embedder.dim,)
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed(crops(embedder, 1)[0])
