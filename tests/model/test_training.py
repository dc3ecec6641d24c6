"""A tiny real training run on real faces: the loss falls and the identities come apart."""

import numpy as np
import pytest
import torch

from app.faces import crops_to_tensor
from model.config import from_dict
from model.data import aligned_crops, detect_source
from model.pool import TrainingData
from model.train import Trainer


@pytest.fixture(scope="module")
def faces(testfaces):
    source = testfaces / "lfw"
    detections = detect_source(source, teacher=False, workers=1)
    crops = aligned_crops(source, detections, 32, workers=1)
    return TrainingData(crops[detections.found], list(detections.labels[detections.found]), None)


def separation(model, data: TrainingData) -> float:
    """Mean distance between different people minus mean distance between photos of the same person."""
    model.eval()
    with torch.inference_mode():
        v = model(crops_to_tensor(data.crops))
    d = torch.cdist(v, v).numpy()
    labels = np.array(data.labels)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(d[~same].mean() - d[same & off_diagonal].mean())


@pytest.mark.parametrize("metric", ["triplet", "contrastive"])
def test_a_tiny_run_lowers_the_loss_and_separates_identities(faces, tmp_path, metric):
    config = from_dict({
        "name": "tiny", "out_root": str(tmp_path), "seed": 0, "steps": 60, "p": 10, "k": 3,
        "distill_batch": 0, "lr": 3e-3, "warmup": 5, "log_every": 10, "checkpoint_every": 1000, "threads": 2,
        "network": {"input_size": 32, "embedding_dim": 32, "width": 0.5},
        "loss": {"metric": metric, "distill_weight": 0.0},
        "augment": {"rotate": 0.0, "blur": 0.0, "downup": 0.0},
    })
    trainer = Trainer(config, faces)
    before = separation(trainer.model, faces)
    losses = [trainer.train_step()["loss"] for _ in range(config.steps)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    trainer.recalibrate_batchnorm(batches=10, batch_size=30)  # as fit() does before its final save
    after = separation(trainer.model, faces)
    assert after > before + 0.2 and after > 0.3


def test_a_checkpoint_resumes_where_it_stopped(faces, tmp_path):
    config = from_dict({
        "name": "resume", "out_root": str(tmp_path), "steps": 4, "p": 4, "k": 2, "distill_batch": 0,
        "warmup": 1, "checkpoint_every": 2, "threads": 1, "network": {"input_size": 32, "width": 0.25},
        "loss": {"distill_weight": 0.0},
    })
    first = Trainer(config, faces)
    first.fit()
    again = Trainer(config, faces)
    again.resume()
    assert again.step == 4
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key


def test_ema_weights_become_the_final_model_and_a_finished_run_stays_finished(faces, tmp_path):
    config = from_dict({
        "name": "ema", "out_root": str(tmp_path), "steps": 6, "p": 4, "k": 2, "distill_batch": 0,
        "warmup": 1, "checkpoint_every": 3, "threads": 1, "ema_decay": 0.5,
        "network": {"input_size": 32, "width": 0.25}, "loss": {"distill_weight": 0.0},
    })
    trainer = Trainer(config, faces)
    path = trainer.fit()
    final = torch.load(path, weights_only=True)
    assert final["final"] and "optimizer" not in final
    weights = {k: v for k, v in final["state_dict"].items() if "running" not in k and "num_batches" not in k}
    for (name, _), average in zip(trainer.model.named_parameters(), trainer.ema, strict=True):
        assert torch.equal(weights[name], average), name
    again = Trainer(config, faces)
    again.resume()
    assert again.fit() == path
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"][next(iter(weights))],
                       final["state_dict"][next(iter(weights))])
