"""The service, bulk enrollment, evaluation and calibration see a photo the same way: one PipelineConfig and one
face policy, so that the card's thresholds and figures are the service's."""

from __future__ import annotations

from pathlib import Path

import pytest

import model.evaluation.calibrate as calibrate
from app.core.config import Settings
from model.evaluation.evaluate import parse_args, pipeline_config
from model.faces.config import DEFAULT_MODEL, SERVICE_POLICY
from model.faces.embedder import Embedder


class Called(Exception):
    pass


def test_evaluation_and_calibration_use_the_services_pipeline_and_policy(tmp_path, monkeypatch):
    settings = Settings()
    embedder = Embedder.load(DEFAULT_MODEL, "cpu")
    # the service's and bulk enrollment's (both build them from Settings)
    assert settings.photos.face_policy == SERVICE_POLICY
    assert settings.pipeline_config(embedder.input_size, embedder.card.preprocess) == pipeline_config(embedder)

    # model.evaluation's default
    data, pairs = tmp_path / "lfw.tar", tmp_path / "pairs.txt"
    data.touch()
    pairs.touch()
    assert parse_args(["lfw", "--data", str(data), "--pairs", str(pairs)]).policy == "dominant"

    # model.evaluation.calibrate (what model.release.export calibrates with)
    seen = {}

    def detect_source(source: Path, **kwargs):  # noqa: ANN003, ANN202
        seen.update(kwargs)
        raise Called

    monkeypatch.setattr(calibrate, "detect_source", detect_source)
    with pytest.raises(Called):
        calibrate.celeba_photos(embedder, tmp_path, tmp_path)
    assert seen["policy"] == SERVICE_POLICY and seen["config"] == pipeline_config(embedder)
