"""A tiny real training run on real faces: the loss falls and the identities come apart."""

import shutil

import numpy as np
import pytest
import torch

from model.datasets.sources import aligned_crops, detect_source
from model.faces.config import PipelineConfig
from model.networks import crops_to_tensor
from model.training.config import from_dict
from model.training.pool import TrainingData
from model.training.train import Trainer


@pytest.fixture(scope="module")
def faces(testfaces, cache):
    source = testfaces / "lfw"
    detections = detect_source(source, cache=cache, with_teacher=False, processes=1)
    crops = aligned_crops(source, detections, PipelineConfig(crop_size=32), cache=cache, processes=1)
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


def test_a_run_stopped_midway_and_resumed_ends_as_an_uninterrupted_run(faces, tmp_path):
    """Weights, optimizer state, schedule and every random draw (batches, augmentation) carry over."""

    def config(name: str):
        return from_dict({
            "name": name, "out_root": str(tmp_path), "steps": 6, "p": 4, "k": 2, "distill_batch": 4,
            "warmup": 2, "checkpoint_every": 100, "threads": 1, "ema_decay": 0.5,
            "network": {"input_size": 32, "width": 0.25}, "loss": {"distill_weight": 0.0},
        })

    uninterrupted = torch.load(Trainer(config("straight"), faces).fit(), weights_only=True)
    stopped = Trainer(config("stopped"), faces)
    for _ in range(3):
        stopped.train_step()
    midway = stopped.save()  # what fit() leaves behind when the process dies after a checkpoint
    (tmp_path / "reseeded").mkdir()
    shutil.copy(midway, tmp_path / "reseeded" / midway.name)
    resumed = Trainer(config("stopped"), faces)
    resumed.resume()
    assert resumed.step == 3 and resumed.schedule.last_epoch == 3
    final = torch.load(resumed.fit(), weights_only=True)
    assert final["step"] == uninterrupted["step"] == 6
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, final["state_dict"][key]), key
    # A resume that ignored the saved random state would have drawn other batches: the weights would differ.
    reseeded = Trainer(config("reseeded"), faces)
    reseeded.resume()
    reseeded.sampler = type(reseeded.sampler)(faces.labels, 4, 2, seed=3)
    other = torch.load(reseeded.fit(), weights_only=True)["state_dict"]
    assert any(not torch.equal(value, other[key]) for key, value in uninterrupted["state_dict"].items())


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


def test_fine_tuning_starts_from_dlibs_network_with_an_online_teacher(testfaces, cache, tmp_path):
    """init = "dlib": the student is dlib's ResNet; the frozen teacher judges the same augmented faces, so the
    first step's distillation loss is zero, and training moves the student away from it."""
    source = testfaces / "lfw"
    config = from_dict({
        "name": "finetune", "out_root": str(tmp_path), "architecture": "DlibResNet", "init": "dlib",
        "teacher": "online", "steps": 3, "p": 4, "k": 2, "distill_batch": 2, "lr": 1e-4, "warmup": 1,
        "threads": 2, "loss": {"metric": "contrastive", "distill_weight": 1.0},
    })
    detections = detect_source(source, cache=cache, with_teacher=False, processes=1)
    crops = aligned_crops(source, detections, config.pipeline, cache=cache, processes=1)
    data = TrainingData(crops[detections.found], list(detections.labels[detections.found]), None)
    assert data.input_size == 150
    trainer = Trainer(config, data)
    first = trainer.train_step()
    assert first["distill"] == pytest.approx(0.0, abs=1e-5) and first["metric"] > 0
    trainer.train_step()
    teacher, student = trainer.online_teacher.state_dict(), trainer.model.state_dict()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)
    checkpoint = torch.load(trainer.save(final=True), weights_only=True)
    assert checkpoint["architecture"] == "DlibResNet" and checkpoint["preprocess"] == "dlib-chip-v1"


def test_a_student_on_dlibs_chip_learns_from_the_online_teacher(testfaces, cache, tmp_path):
    """teacher = "online" for a MobileFaceNet: the pool holds dlib's chips at the teacher's 150 px, the student
    sees the same augmented faces at its own size, its targets are centred, and it learns them."""
    source = testfaces / "lfw"
    config = from_dict({
        "name": "student", "out_root": str(tmp_path), "teacher": "online", "chip": "dlib-chip-v1", "steps": 60,
        "p": 5, "k": 2, "distill_batch": 10, "lr": 3e-3, "warmup": 2, "threads": 2,
        "network": {"input_size": 48, "width": 0.5}, "loss": {"metric_weight": 0.0},
    })
    assert (config.pipeline.chip, config.pipeline.crop_size, config.pool_pipeline.crop_size) == ("dlib-chip-v1", 48,
                                                                                                  150)
    detections = detect_source(source, cache=cache, with_teacher=False, processes=1)
    crops = aligned_crops(source, detections, config.pool_pipeline, cache=cache, processes=1)
    data = TrainingData(crops[detections.found], list(detections.labels[detections.found]), None)
    trainer = Trainer(config, data)
    # The shift is most of the teacher's mean: dlib's descriptors of unrelated faces point the same way.
    with torch.no_grad():
        raw = trainer.online_teacher.raw(crops_to_tensor(trainer.crops[:8])).mean(0)
    assert torch.nn.functional.cosine_similarity(trainer.teacher_shift, raw, dim=0) > 0.95
    losses = [trainer.train_step()["distill"] for _ in range(config.steps)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    checkpoint = torch.load(trainer.save(final=True), weights_only=True)
    assert checkpoint["preprocess"] == "dlib-chip-v1" and checkpoint["network"]["input_size"] == 48


def test_an_online_teachers_student_must_take_dlibs_chip():
    with pytest.raises(ValueError, match="dlib-chip-v1"):
        from_dict({"teacher": "online"})
    with pytest.raises(ValueError, match="chip must be one of"):
        from_dict({"chip": "fg-align-v9"})
    with pytest.raises(ValueError, match="crop_size"):
        from_dict({"data": {"crop_size": -112}})


def test_init_dlib_needs_the_dlib_architecture():
    with pytest.raises(ValueError, match="DlibResNet"):
        from_dict({"init": "dlib"})
