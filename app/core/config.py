"""One settings object, read from the environment with the prefix FACEGATE_ (or a .env file).

It imports neither torch nor dlib: `python -m app.cli.keys` and `alembic` start without them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.logs import LogFormat
from model.faces.config import DEFAULT_MODEL, Augment, Chip, FacePolicy, PipelineConfig, QualityPolicy

DEFAULT_DATABASE_URL = "sqlite:///./facegate.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = Field(default="development",
        description="`production` refuses the default SQLite URL and keys turned off")
    # text: "time level logger [request id] message"; json: one object per line, for a log collector.
    log_format: LogFormat = "text"
    database_url: str = Field(default=DEFAULT_DATABASE_URL,
        description="SQLite file, or PostgreSQL: `postgresql+psycopg://user:pass@host:5432/db`")
    # None: migrate at start-up on SQLite (the embedded default), leave it to `alembic upgrade head` elsewhere.
    auto_migrate: bool | None = None

    # API keys (X-API-Key, see app.cli.keys). Off is for a developer's machine only, and the log says so.
    auth: bool = True
    # How long a replica trusts what it read about a key: a revocation takes effect within this time.
    key_cache_seconds: float = Field(default=5.0, ge=0.0, le=300.0)

    model_path: Path = Field(
        default=DEFAULT_MODEL,
        description="the weights; the card is the `.json` beside them (`facegate-mfn.pt`: the fast option)")
    # The model being rolled out (app.cli.reembed): loaded beside the serving one; enrollments make templates of
    # both, and the replica switches to it when the gallery does.
    next_model_path: Path | None = None
    # Keep each enrollment photo, encrypted (AES-256-GCM), so that a new model can re-embed it: off by default.
    # The keys: base64 of 32 random bytes each (python -m app.cli.references new-key), comma-separated,
    # the first seals and all open; in the setting or in a file (a Docker secret, say).
    reference_store: bool = False
    reference_keys: SecretStr | None = Field(default=None,
        description="the reference store's AES-256 keys, base64, comma- or line-separated: the first seals, all open")
    reference_keys_file: Path | None = Field(default=None,
        description="the same keys from a file (a Docker secret, say)")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto",
        description="`cpu`, `cuda`, or `auto` (CUDA in fp16 when present)")
    # Test-time augmentation; None = the one the model card was calibrated with. Changing it changes the
    # distances the card's thresholds were calibrated on.
    augment: Augment | None = None
    # Overrides the model card's calibrated threshold; only for operators who re-calibrated on their own data.
    threshold: float | None = Field(default=None, gt=0.0, le=2.0)
    # 1:N: the share of strangers that /identify may name as an employee. The threshold follows from the card's
    # impostor tail and the gallery's size (it tightens as the gallery grows); /identify reports it.
    identify_fpir: float = Field(default=1e-3, gt=0.0, le=0.1)
    # /identify lists the top_k nearest employees besides the match. Off: a door's key would otherwise get
    # names and distances for any photo, strangers' included.
    identify_candidates: bool = False
    # References an employee may have (the enrollment's and those added by POST /employees/{id}/references).
    # A decision uses the nearest; the threshold tightens with their number so that an impostor's chance of
    # passing stays what the card calibrated for one (app.services.recognition.references_threshold).
    max_references: int = Field(default=5, ge=1, le=20)
    # Brute force: after this many failed verifications of one employee (or by one key) within the window,
    # /verify answers 429 with Retry-After until the oldest leaves it. Counted in the database: every replica
    # sees the same. 0 turns a limit off.
    verify_max_failures: int = Field(default=5, ge=0)
    verify_max_failures_per_key: int = Field(default=100, ge=0,
        description="failed verifications by one key within the window before 429 (0: off)")
    verify_failure_window_seconds: float = Field(default=900.0, gt=0.0, le=86_400.0,
        description="the window failed verifications are counted in")

    # Request work (decode, detect, embed) runs on a bounded pool of threads, never on the event loop;
    # torch and dlib release the GIL. 0 = two per core.
    request_threads: int = Field(default=0, ge=0)
    # Threads each torch forward pass may use; 0 = torch's default (one per core). Concurrent requests are
    # the parallelism: with one thread each, 4 concurrent /verify on 2 cores serve 42 requests/s instead of
    # 30, and the tail shortens (benchmarks/http.py), since nobody oversubscribes the cores.
    torch_threads: int = Field(default=1, ge=0)
    # Gather concurrent requests' faces into one forward pass: "auto" does so on CUDA only.
    micro_batch: Literal["auto", "on", "off"] = "auto"
    micro_batch_size: int = Field(default=64, ge=1, le=1024, description="the largest micro-batch")
    micro_batch_delay_ms: float = Field(default=2.0, ge=0.0, le=100.0,
        description="the longest a face waits for company in a micro-batch")

    # How often a replica polls the change feed (on PostgreSQL, LISTEN/NOTIFY usually wakes it sooner).
    feed_poll_interval: float = Field(default=0.25, gt=0.0, le=10.0)
    # How long the change feed keeps a row. A replica that is away longer rebuilds its index when it returns.
    feed_retention_seconds: float = Field(default=86_400.0, ge=60.0)

    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="the largest request body")
    max_image_pixels: int = Field(default=40_000_000, gt=0, description="the largest photo, in pixels")
    # Memory one photo's decode may take; it depends on the format as much as on the pixels (a 16-bit PNG
    # needs 12 bytes a pixel, a JPEG 7, and a JPEG over the limit is decoded at a reduced scale instead).
    max_decode_mib: int = Field(default=160, ge=16)
    detect_max_side: int = Field(default=640, ge=160,
        description="detection runs on a copy no larger than this, in pixels")
    # HOG without upsampling first (faces of 80 px and up), upsampled only when that finds nothing.
    adaptive_upsample: bool = True
    min_face_size: int = Field(default=40, ge=8, description="smallest face side, in pixels, that is accepted")
    # reject: any photo with two or more faces is refused.
    # dominant: the largest face is used when its area is at least dominant_face_ratio times the next one's.
    multi_face_policy: Literal["reject", "dominant"] = "dominant"
    dominant_face_ratio: float = Field(default=2.0, ge=1.0,
        description="`dominant`: how much larger (in area) the face used must be than the next")

    # An enrollment photo must pass these (422 poor_quality, unless an admin passes force=true); verify and
    # identify only report them. Chosen from measurement: benchmarks/quality.py and docs/enrollment.md's table.
    enroll_quality: bool = True
    quality_min_face_size: int = Field(default=80, ge=0, description="enrollment: the smallest face side, in pixels")
    quality_min_sharpness: float = Field(default=20.0, ge=0.0,
        description="enrollment: the least sharpness (variance of the Laplacian of the face)")
    quality_max_yaw: float = Field(default=30.0, gt=0.0, le=90.0,
        description="enrollment: the largest head turn, in degrees")
    quality_max_roll: float = Field(default=25.0, gt=0.0, le=180.0,
        description="enrollment: the largest head tilt, in degrees")
    quality_min_brightness: float = Field(default=40.0, ge=0.0, le=255.0,
        description="enrollment: the darkest mean grey level of the face, 0-255")
    quality_max_brightness: float = Field(default=220.0, ge=0.0, le=255.0,
        description="enrollment: the brightest mean grey level of the face, 0-255")

    @property
    def quality_policy(self) -> QualityPolicy:
        return QualityPolicy(min_face_size=self.quality_min_face_size, min_sharpness=self.quality_min_sharpness,
                             max_yaw=self.quality_max_yaw, max_roll=self.quality_max_roll,
                             min_brightness=self.quality_min_brightness, max_brightness=self.quality_max_brightness)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def pipeline_config(self, crop_size: int, chip: Chip) -> PipelineConfig:
        """The faces pipeline as the service runs it, for a model of this input size and chip geometry."""
        return PipelineConfig(crop_size=crop_size, chip=chip, detect_max_side=self.detect_max_side,
                              adaptive_upsample=self.adaptive_upsample)

    @property
    def face_policy(self) -> FacePolicy:
        return FacePolicy(multi_face=self.multi_face_policy, dominant_ratio=self.dominant_face_ratio,
                          min_face_size=self.min_face_size, max_pixels=self.max_image_pixels,
                          max_decode_bytes=self.max_decode_mib * 2**20)

    @property
    def worker_threads(self) -> int:
        return self.request_threads or 2 * (os.cpu_count() or 1)

    @property
    def migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        if self.environment == "production" and self.database_url == DEFAULT_DATABASE_URL:
            raise ValueError("FACEGATE_DATABASE_URL must be set explicitly in production")
        if self.environment == "production" and not self.auth:
            raise ValueError("FACEGATE_AUTH=false is for a developer's machine; production requires API keys")
        if self.reference_store and self.reference_keys is None and self.reference_keys_file is None:
            raise ValueError("FACEGATE_REFERENCE_STORE=true needs FACEGATE_REFERENCE_KEYS or "
                             "FACEGATE_REFERENCE_KEYS_FILE")
        if self.quality_min_brightness >= self.quality_max_brightness:
            raise ValueError("FACEGATE_QUALITY_MIN_BRIGHTNESS must be below FACEGATE_QUALITY_MAX_BRIGHTNESS")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
