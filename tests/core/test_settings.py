"""Settings that would be unsafe are refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError


def test_production_refuses_to_start_with_auth_off():
    from app.core.config import Settings

    with pytest.raises(ValidationError, match="production requires API keys"):
        Settings(environment="production", auth=False, database_url="postgresql+psycopg://db/facegate")
    assert Settings(environment="production", auth=True, database_url="postgresql+psycopg://db/facegate").keys.required


@pytest.mark.parametrize("setting", [{"identify_fpir": 0}, {"identify_fpir": 0.5}, {"verify_max_failures": -1},
                                     {"verify_max_failures_per_key": -1}, {"verify_failure_window_seconds": 0},
                                     {"max_decode_mib": 1}])
def test_the_guards_settings_refuse_out_of_range_values_at_start_up(setting):
    from app.core.config import Settings

    with pytest.raises(ValidationError):
        Settings(**setting)


# Every variable of the flat Settings that deployments were configured with (6b36cbe), a value unlike its
# default, and where the grouped Settings must put it.
VARIABLES = {
    "ENVIRONMENT": ("production", "environment", "production"),
    "LOG_FORMAT": ("json", "log_format", "json"),
    "DATABASE_URL": ("postgresql+psycopg://db/facegate", "database_url", "postgresql+psycopg://db/facegate"),
    "AUTO_MIGRATE": ("true", "auto_migrate", True),
    "AUTH": ("true", "keys.required", True),
    "KEY_CACHE_SECONDS": ("7", "keys.cache_seconds", 7.0),
    "MODEL_PATH": ("/m/a.pt", "model.path", Path("/m/a.pt")),
    "NEXT_MODEL_PATH": ("/m/b.pt", "model.next_path", Path("/m/b.pt")),
    "REFERENCE_STORE": ("true", "references.store", True),
    "REFERENCE_KEYS": ("a2V5", "references.keys", "a2V5"),
    "REFERENCE_KEYS_FILE": ("/run/keys", "references.keys_file", Path("/run/keys")),
    "DEVICE": ("cpu", "model.device", "cpu"),
    "AUGMENT": ("views", "model.augment", "views"),
    "THRESHOLD": ("0.3", "model.threshold", 0.3),
    "IDENTIFY_FPIR": ("0.01", "identify.fpir", 0.01),
    "IDENTIFY_CANDIDATES": ("true", "identify.candidates", True),
    "MAX_REFERENCES": ("3", "references.max", 3),
    "VERIFY_MAX_FAILURES": ("6", "lockout.max_failures", 6),
    "VERIFY_MAX_FAILURES_PER_KEY": ("60", "lockout.max_failures_per_key", 60),
    "VERIFY_FAILURE_WINDOW_SECONDS": ("60", "lockout.failure_window_seconds", 60.0),
    "REQUEST_THREADS": ("3", "compute.request_threads", 3),
    "TORCH_THREADS": ("2", "compute.torch_threads", 2),
    "MICRO_BATCH": ("on", "compute.micro_batch", "on"),
    "MICRO_BATCH_SIZE": ("8", "compute.micro_batch_size", 8),
    "MICRO_BATCH_DELAY_MS": ("1.5", "compute.micro_batch_delay_ms", 1.5),
    "FEED_POLL_INTERVAL": ("0.5", "feed.poll_interval", 0.5),
    "FEED_RETENTION_SECONDS": ("3600", "feed.retention_seconds", 3600.0),
    "MAX_UPLOAD_BYTES": ("1000", "photos.max_upload_bytes", 1000),
    "MAX_IMAGE_PIXELS": ("1000000", "photos.max_image_pixels", 1_000_000),
    "MAX_DECODE_MIB": ("64", "photos.max_decode_mib", 64),
    "DETECT_MAX_SIDE": ("480", "photos.detect_max_side", 480),
    "DETECT_COARSE_SIDE": ("320", "photos.detect_coarse_side", 320),
    "ADAPTIVE_UPSAMPLE": ("false", "photos.adaptive_upsample", False),
    "FALLBACK_MAX_PIXELS": ("50000", "photos.fallback_max_pixels", 50_000),
    "FALLBACK_SECONDS": ("2.5", "photos.fallback_seconds", 2.5),
    "PRECISION": ("bf16", "model.precision", "bf16"),
    "MIN_FACE_SIZE": ("60", "photos.min_face_size", 60),
    "MULTI_FACE_POLICY": ("reject", "photos.multi_face_policy", "reject"),
    "DOMINANT_FACE_RATIO": ("3", "photos.dominant_face_ratio", 3.0),
    "ENROLL_QUALITY": ("false", "quality.enforce", False),
    "QUALITY_MIN_FACE_SIZE": ("90", "quality.min_face_size", 90),
    "QUALITY_MIN_SHARPNESS": ("25", "quality.min_sharpness", 25.0),
    "QUALITY_MAX_YAW": ("20", "quality.max_yaw", 20.0),
    "LIVENESS_REQUIRED": ("true", "liveness.required", True),
    "LIVENESS_CHALLENGE_SECONDS": ("45", "liveness.challenge_seconds", 45),
    "LIVENESS_MAX_FRAMES": ("24", "liveness.max_frames", 24),
    "LIVENESS_MAX_FRAME_PIXELS": ("500000", "liveness.max_frame_pixels", 500_000),
    "LIVENESS_TURN_DEGREES": ("14", "liveness.turn_degrees", 14.0),
    "LIVENESS_CENTRE_DEGREES": ("6", "liveness.centre_degrees", 6.0),
    "LIVENESS_MAX_STEP_DEGREES": ("35", "liveness.max_step_degrees", 35.0),
    "LIVENESS_MIN_SPREAD": ("0.85", "liveness.min_spread", 0.85),
    "LIVENESS_MIN_RELIEF": ("0.02", "liveness.min_relief", 0.02),
    "LIVENESS_MIN_SHAPE": ("0.1", "liveness.min_shape", 0.1),
    "QUALITY_MAX_ROLL": ("15", "quality.max_roll", 15.0),
    "QUALITY_MIN_BRIGHTNESS": ("50", "quality.min_brightness", 50.0),
    "QUALITY_MAX_BRIGHTNESS": ("200", "quality.max_brightness", 200.0),
    "MAX_FRAMES": ("3", "photos.max_frames", 3),
    "MAX_GROUPS": ("20", "membership.max_groups", 20),
    "VERIFY_KEY_LIMIT": ("block", "lockout.key_limit", "block"),
    "KEY_GRACE_SECONDS": ("30", "keys.grace_seconds", 30.0),
    "AUDIT_SPOOL_DIR": ("/var/spool/facegate", "audit.spool_dir", Path("/var/spool/facegate")),
    "AUDIT_SPOOL_MAX_MB": ("64", "audit.spool_max_mb", 64),
    "MAX_GROUPS_PER_EMPLOYEE": ("4", "membership.max_per_employee", 4),
    "MAX_GROUP_BULK": ("50", "membership.max_bulk", 50),
}


def read(settings, where: str):  # noqa: ANN001, ANN201
    value = settings
    for part in where.split("."):
        value = getattr(value, part)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def test_every_variable_of_the_flat_settings_still_works_from_the_environment(monkeypatch, tmp_path):
    from app.core.config import Settings

    monkeypatch.chdir(tmp_path)  # no .env here
    for name, (text, _, _) in VARIABLES.items():
        monkeypatch.setenv(f"FACEGATE_{name}", text)
    settings = Settings()
    assert {name: read(settings, where) for name, (_, where, _) in VARIABLES.items()} == \
        {name: expected for name, (_, _, expected) in VARIABLES.items()}
    assert set(VARIABLES) == {v.removeprefix("FACEGATE_") for v in variables_of(Settings)}, "a variable changed"


def variables_of(settings_class) -> set[str]:  # noqa: ANN001
    return {f"FACEGATE_{name.upper()}" for name in settings_class.model_fields if name not in settings_class.groups()} \
        | {f"FACEGATE_{flat.upper()}" for flat in settings_class.flat_names()}


def test_a_dot_env_file_and_keyword_arguments_use_the_same_names(monkeypatch, tmp_path):
    from app.core.config import Settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FACEGATE_QUALITY_MAX_YAW=22\nfacegate_auth=false\nFACEGATE_DEVICE=cpu\n")
    monkeypatch.setenv("FACEGATE_DEVICE", "cuda")  # the environment wins over the file
    settings = Settings(verify_max_failures=0, quality_min_sharpness=3)
    assert (settings.quality.max_yaw, settings.keys.required, settings.model.device) == (22.0, False, "cuda")
    assert (settings.lockout.max_failures, settings.quality.min_sharpness) == (0, 3.0)
    assert Settings(quality_max_yaw=10).quality.max_yaw == 10.0, "a keyword argument wins over the file"
    assert Settings(_env_file=None).quality.max_yaw == 30.0, "no file, as pydantic-settings reads _env_file"


def test_the_face_policy_defaults_are_the_model_sides():
    from app.core.config import Settings
    from model.faces.config import SERVICE_POLICY, PipelineConfig

    settings = Settings(_env_file=None)
    assert settings.photos.face_policy == SERVICE_POLICY
    assert settings.pipeline_config(150, "dlib-chip-v1") == PipelineConfig(crop_size=150, chip="dlib-chip-v1")


def test_a_coarse_look_is_none_or_at_least_two_hog_windows():
    from app.core.config import Settings

    with pytest.raises(ValidationError, match="DETECT_COARSE_SIDE"):
        Settings(detect_coarse_side=100)
    assert Settings(_env_file=None).pipeline_config(150, "dlib-chip-v1").coarse_side == 0
    assert Settings(detect_coarse_side=320).pipeline_config(150, "dlib-chip-v1").coarse_side == 320


def test_a_liveness_turn_must_reach_beyond_the_centre_band():
    """A turn starts where the yaw passes FACEGATE_LIVENESS_TURN_DEGREES and lasts while it is beyond the centre
    band: a turn within the band would end where it starts (a burst's check raised, a 500, before this)."""
    from app.core.config import Settings

    for turn, centre in ((6, 8), (8, 8)):
        with pytest.raises(ValidationError, match="LIVENESS_CENTRE_DEGREES: a turn must reach beyond the centre"):
            Settings(liveness_turn_degrees=turn, liveness_centre_degrees=centre, _env_file=None)
    assert Settings(liveness_turn_degrees=9, _env_file=None).liveness.rules.turn == 9.0
