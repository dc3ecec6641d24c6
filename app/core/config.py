"""One settings object, read from the environment with the prefix FACEGATE_ (or a .env file).

The settings are grouped (`settings.quality.max_yaw`, `settings.lockout.max_failures`), and every setting
keeps the one variable it has always had (FACEGATE_QUALITY_MAX_YAW, FACEGATE_VERIFY_MAX_FAILURES): a group
names the prefix its variables share, and a field whose variable does not follow it names its own
(`variable("AUTH")`). The same flat names are accepted as keyword arguments (`Settings(auth=False)`), so a test,
a variable and the generated docs/configuration.md all name a setting alike. The defaults of the face policy
and the pipeline are the model side's own (model.faces.config), written once.

It imports neither torch nor dlib: `python -m app.cli.keys` and `alembic` start without them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.core.logs import LogFormat
from model.faces.config import (
    DEFAULT_MODEL,
    SERVICE_POLICY,
    Augment,
    Chip,
    FacePolicy,
    PipelineConfig,
    QualityPolicy,
    TurnRules,
)

PREFIX = "FACEGATE_"
DEFAULT_DATABASE_URL = "sqlite:///./facegate.db"
MiB = 2**20
# The coarse look's smallest side: two HOG windows (a smaller look finds only faces filling half the frame).
MIN_COARSE_SIDE = 160


def variable(name: str) -> dict[str, Any]:
    """A field's own variable, where it does not follow its group's prefix: Field(..., **variable("AUTH"))."""
    return {"json_schema_extra": {"variable": name}}


class Group(BaseModel):
    """Settings that belong together; each is read from FACEGATE_<prefix><FIELD> unless it names its own."""

    prefix: ClassVar[str] = ""

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{field: its variable's name without FACEGATE_}."""
        return {name: ((field.json_schema_extra or {}).get("variable") or f"{cls.prefix}{name}").upper()
                for name, field in cls.model_fields.items()}


class ModelSettings(Group):
    prefix = "MODEL_"

    path: Path = Field(
        default=DEFAULT_MODEL,
        description="the weights; the card is the `.json` beside them (`facegate-mfn.pt`: the fast option)")
    # The model being rolled out (app.cli.reembed): loaded beside the serving one; enrollments make templates of
    # both, and the replica switches to it when the gallery does.
    next_path: Path | None = Field(default=None, **variable("NEXT_MODEL_PATH"))
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`cpu`, `cuda`, or `auto` (CUDA in fp16 when present)", **variable("DEVICE"))
    # auto: fp16 on a GPU; on the CPU int8, the card's quantized network in ONNX Runtime (model.release.quantize:
    # 7-bit weights, exact on every CPU; a face 2.8 times faster than fp32 where the CPU has AVX-512 VNNI, about
    # twice with AVX2 alone, within cosine 0.998 of fp32's, decided by its own thresholds), where the card has
    # one for the augmentation served, fp32 otherwise. fp32: the reference, the card's own figures. bf16: the
    # CPU's convolutions in bfloat16, a third faster than fp32 where the CPU has AVX-512 BF16 or AMX, within
    # cosine 0.9999 of fp32's, at fp32's thresholds.
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(default="auto", **variable("PRECISION"))
    # Test-time augmentation; None = the one the model card was calibrated with. Changing it changes the
    # distances the card's thresholds were calibrated on.
    augment: Augment | None = Field(default=None, **variable("AUGMENT"))
    # Overrides the model card's calibrated threshold; only for operators who re-calibrated on their own data.
    threshold: float | None = Field(default=None, gt=0.0, le=2.0, **variable("THRESHOLD"))


class KeySettings(Group):
    prefix = "KEY_"

    # API keys (X-API-Key, see app.cli.keys). Off is for a developer's machine only, and the log says so.
    required: bool = Field(default=True, **variable("AUTH"))
    # How long a replica trusts what it read about a key: a revocation takes effect within this time.
    cache_seconds: float = Field(default=5.0, ge=0.0, le=300.0)
    # While the database is away, a key read valid within this many seconds stays valid (0: off); a revocation
    # made in the cache's seconds before an outage then waits for the database (app.services.keys).
    grace_seconds: float = Field(default=300.0, ge=0.0, le=3600.0, description="how long a key read valid stays "
                                 "valid while the database is away (0: off)")


class ReferenceSettings(Group):
    prefix = "REFERENCE_"

    # References an employee may have (the enrollment's and those added by POST /employees/{id}/references).
    # They are fused into one template (their normalised mean), decided at the threshold the card calibrated
    # for templates of that many (docs/decisions.md).
    max: int = Field(default=5, ge=1, le=20, **variable("MAX_REFERENCES"))
    # Keep each enrollment photo, encrypted (AES-256-GCM), so that a new model can re-embed it: off by default.
    # The keys: base64 of 32 random bytes each (python -m app.cli.references new-key), comma-separated,
    # the first seals and all open; in the setting or in a file (a Docker secret, say).
    store: bool = False
    keys: SecretStr | None = Field(
        default=None,
        description="the reference store's AES-256 keys, base64, comma- or line-separated: the first seals, all open")
    keys_file: Path | None = Field(default=None, description="the same keys from a file (a Docker secret, say)")


class MembershipSettings(Group):
    prefix = "GROUP_"

    # Groups (a door's people: POST /groups), and the bounds that keep an admin's mistake or a script's loop
    # from growing them without end.
    max_groups: int = Field(default=10_000, ge=1, le=1_000_000, **variable("MAX_GROUPS"))
    max_per_employee: int = Field(default=100, ge=1, le=10_000, description="groups one employee may belong to",
                                  **variable("MAX_GROUPS_PER_EMPLOYEE"))
    max_bulk: int = Field(default=1_000, ge=1, le=100_000, description="employees one call may add to a group "
                          "(POST /groups/{id}/members)", **variable("MAX_GROUP_BULK"))


class AuditSettings(Group):
    prefix = "AUDIT_"

    # Where audit rows wait while the database is away (app.services.audit_spool), replayed in order once it is
    # back, by this process or, after a restart, the next one: keep it on a volume that outlives the container.
    spool_dir: Path = Field(default=Path("audit-spool"), description="where audit rows wait while the database is "
                            "away (relative to the working directory)")
    # When the spool holds this much, no decision is made (503 audit_unavailable) until the database is back.
    spool_max_mb: int = Field(default=256, ge=1, le=1_000_000)


class IdentifySettings(Group):
    prefix = "IDENTIFY_"

    # 1:N: the share of strangers that /identify may name as an employee. The threshold follows from the card's
    # impostor tail and the gallery's size (it tightens as the gallery grows); /identify reports it.
    fpir: float = Field(default=1e-3, gt=0.0, le=0.1)
    # /identify lists the top_k nearest employees besides the match. Off: a door's key would otherwise get
    # names and distances for any photo, strangers' included.
    candidates: bool = False


class LockoutSettings(Group):
    prefix = "VERIFY_"

    # Brute force: after this many failed verifications of one employee (or by one key) within the window,
    # /verify answers 429 with Retry-After until the oldest leaves it. Counted in the database: every replica
    # sees the same. 0 turns a limit off.
    max_failures: int = Field(default=5, ge=0)
    max_failures_per_key: int = Field(
        default=100, ge=0, description="failed verifications by one key within the window before the key's alarm "
        "(or 429, with FACEGATE_VERIFY_KEY_LIMIT=block; 0: off)")
    # What the per-key limit does: `alarm` (the default) counts and logs it (facegate_lockout_key_alarms_total)
    # and lets the door go on serving, since a busy door's genuine failures would otherwise lock out everyone;
    # `block` answers 429 to the key, everyone at its door included, until the window has room again.
    key_limit: Literal["alarm", "block"] = Field(default="alarm", **variable("VERIFY_KEY_LIMIT"))
    failure_window_seconds: float = Field(
        default=900.0, gt=0.0, le=86_400.0, description="the window failed verifications are counted in")


class ComputeSettings(Group):
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
    micro_batch_delay_ms: float = Field(
        default=2.0, ge=0.0, le=100.0, description="the longest a face waits for company in a micro-batch")

    @property
    def worker_threads(self) -> int:
        return self.request_threads or 2 * (os.cpu_count() or 1)


class FeedSettings(Group):
    prefix = "FEED_"

    # How often a replica polls the change feed (on PostgreSQL, LISTEN/NOTIFY usually wakes it sooner).
    poll_interval: float = Field(default=0.25, gt=0.0, le=10.0)
    # How long the change feed keeps a row. A replica that is away longer rebuilds its index when it returns.
    retention_seconds: float = Field(default=86_400.0, ge=60.0)


class PhotoSettings(Group):
    """What a photo may be, and which of its faces is used: the defaults are the model side's SERVICE_POLICY and
    PipelineConfig, which evaluation and calibration use too."""

    max_upload_bytes: int = Field(default=10 * MiB, gt=0, description="the largest request body (all its photos)")
    max_frames: int = Field(default=5, ge=1, le=10, description="the most frames of one presentation (a burst) that "
                            "/verify and /identify take in one request; they are fused into one probe")
    max_image_pixels: int = Field(default=SERVICE_POLICY.max_pixels, gt=0, description="the largest photo, in pixels")
    # Memory one photo's decode may take; it depends on the format as much as on the pixels (a 16-bit PNG
    # needs 12 bytes a pixel, a JPEG 7, and a JPEG over the limit is decoded at a reduced scale instead).
    max_decode_mib: int = Field(default=SERVICE_POLICY.max_decode_bytes // MiB, ge=16)
    detect_max_side: int = Field(
        default=PipelineConfig.detect_max_side, ge=160, description="detection runs on a copy no larger than this, "
                                                                    "in pixels")
    # A first look on a copy of at most this side, whose faces stand when no face too small for it could change
    # the choice (`dominant` only); 0 = none. It pays where faces fill much of the frame, and costs where they
    # do not (python -m benchmarks.detection; docs/benchmarks.md).
    detect_coarse_side: int = Field(default=PipelineConfig.coarse_side, ge=0, le=4096,
                                    description="the coarse first look's side in pixels, 0 for none (at least 160)")
    # HOG without upsampling first (faces of 80 px and up), upsampled only when that finds nothing.
    adaptive_upsample: bool = PipelineConfig.adaptive_upsample
    # The CNN detector's look at a photo where HOG found nothing costs time in proportion to these pixels
    # (facegate_stage_seconds{stage="detect_fallback"} shows what it costs here).
    fallback_max_pixels: int = Field(
        default=PipelineConfig.cnn_max_pixels, ge=0, le=4_000_000,
        description="the budget of the CNN detector that looks again when HOG finds no face, in pixels (about "
                    "0.6 us each on one AMD EPYC core: 100,000 take 60 ms); 0 turns it off")
    fallback_seconds: float = Field(
        default=1.0, gt=0, le=30, description="how long a request waits for the CNN fallback, its queue included; "
                                              "past it the photo is refused as one without a face (422 no_face)")
    min_face_size: int = Field(
        default=SERVICE_POLICY.min_face_size, ge=8, description="smallest face side, in pixels, that is accepted")
    # reject: any photo with two or more faces is refused.
    # dominant: the largest face is used when its area is at least dominant_face_ratio times the next one's.
    multi_face_policy: Literal["reject", "dominant"] = SERVICE_POLICY.multi_face
    dominant_face_ratio: float = Field(
        default=SERVICE_POLICY.dominant_ratio, ge=1.0,
        description="`dominant`: how much larger (in area) the face used must be than the next")

    @model_validator(mode="after")
    def _a_coarse_side(self) -> PhotoSettings:
        if 0 < self.detect_coarse_side < MIN_COARSE_SIDE:
            raise ValueError(f"FACEGATE_DETECT_COARSE_SIDE must be 0 (no coarse look) or at least {MIN_COARSE_SIDE}")
        return self

    @property
    def face_policy(self) -> FacePolicy:
        return FacePolicy(multi_face=self.multi_face_policy, dominant_ratio=self.dominant_face_ratio,
                          min_face_size=self.min_face_size, max_pixels=self.max_image_pixels,
                          max_decode_bytes=self.max_decode_mib * MiB)


class LivenessSettings(Group):
    """The head-turn challenge (model.faces.liveness): how it is issued, and the rules a burst must pass. The
    rules' defaults are chosen by `python -m benchmarks.liveness` (docs/liveness.md has its figures)."""

    prefix = "LIVENESS_"

    required: bool = Field(
        default=False, description="every verify-scope key must pass a challenge at /verify and /identify (a key "
                                   "can also require it alone: `app.cli.keys create --liveness`)")
    challenge_seconds: int = Field(default=30, ge=5, le=300, description="how long a challenge can be answered")
    max_frames: int = Field(default=30, ge=8, le=60, description="the most frames of a challenge's burst")
    max_frame_pixels: int = Field(default=1_000_000, ge=10_000, description="the largest frame of a burst, in "
                                  "pixels (a door camera's 1280x720 is 921,600): the burst's frames are decoded "
                                  "one after another, each within this")
    turn_degrees: float = Field(default=TurnRules.turn, gt=0, le=45, description="how far each turn must reach "
                                "from the burst's first frames, in degrees of yaw (more than the centre's)")
    centre_degrees: float = Field(default=TurnRules.centre, gt=0, le=30, description="how near the first frames' "
                                  "yaw the head must come back between turns")
    max_step_degrees: float = Field(default=TurnRules.max_step, gt=0, le=90, description="the largest change of "
                                    "yaw between two consecutive frames")
    min_spread: float = Field(default=TurnRules.min_spread, ge=0, le=1, description="at a turn's peak, the eye "
                              "line's width relative to the frontal frames', at least (a turned photo's shrinks "
                              "more)")
    min_relief: float = Field(default=TurnRules.min_relief, ge=0, le=1, description="how far the burst's five "
                              "landmarks must leave a plane as the head turns, at least (a photo's stay in its "
                              "plane); 0 turns the check off")
    min_shape: float = Field(default=TurnRules.min_shape, ge=0, le=1, description="the same over 51 of dlib's 68 "
                             "points, which a photo folded at the nose fails more often; 0 (the default) turns the "
                             "check off, since the 68-point predictor's training data excludes commercial use; "
                             "measured at 0.1 (docs/liveness.md)")

    @property
    def rules(self) -> TurnRules:
        return TurnRules(turn=self.turn_degrees, centre=self.centre_degrees, max_step=self.max_step_degrees,
                         min_spread=self.min_spread, min_relief=self.min_relief, min_shape=self.min_shape)

    @model_validator(mode="after")
    def _rules_that_hold(self) -> LivenessSettings:
        try:
            self.rules  # noqa: B018 - built for TurnRules' own check, named here by the variables that set it
        except ValueError as exc:
            raise ValueError(f"FACEGATE_LIVENESS_TURN_DEGREES and FACEGATE_LIVENESS_CENTRE_DEGREES: {exc}") from exc
        return self


class QualitySettings(Group):
    """The least an enrollment photo must offer. Chosen from measurement: benchmarks/quality.py and
    docs/enrollment.md's table."""

    prefix = "QUALITY_"

    # An enrollment photo must pass these (422 poor_quality, unless an admin passes force=true); verify and
    # identify only report them.
    enforce: bool = Field(default=True, **variable("ENROLL_QUALITY"))
    min_face_size: int = Field(default=80, ge=0, description="enrollment: the smallest face side, in pixels")
    min_sharpness: float = Field(
        default=20.0, ge=0.0, description="enrollment: the least sharpness (variance of the Laplacian of the face)")
    max_yaw: float = Field(default=30.0, gt=0.0, le=90.0, description="enrollment: the largest head turn, in degrees")
    max_roll: float = Field(
        default=25.0, gt=0.0, le=180.0, description="enrollment: the largest head tilt, in degrees")
    min_brightness: float = Field(
        default=40.0, ge=0.0, le=255.0, description="enrollment: the darkest mean grey level of the face, 0-255")
    max_brightness: float = Field(
        default=220.0, ge=0.0, le=255.0, description="enrollment: the brightest mean grey level of the face, 0-255")

    @property
    def policy(self) -> QualityPolicy:
        return QualityPolicy(**self.model_dump(exclude={"enforce"}))

    @model_validator(mode="after")
    def _a_range(self) -> QualitySettings:
        if self.min_brightness >= self.max_brightness:
            raise ValueError("FACEGATE_QUALITY_MIN_BRIGHTNESS must be below FACEGATE_QUALITY_MAX_BRIGHTNESS")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development", description="`production` refuses the default SQLite URL and keys turned off")
    # text: "time level logger [request id] message"; json: one object per line, for a log collector.
    log_format: LogFormat = "text"
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLite file, or PostgreSQL: `postgresql+psycopg://user:pass@host:5432/db`")
    # None: migrate at start-up on SQLite (the embedded default), leave it to `alembic upgrade head` elsewhere.
    auto_migrate: bool | None = None

    model: ModelSettings = Field(default_factory=ModelSettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    references: ReferenceSettings = Field(default_factory=ReferenceSettings)
    membership: MembershipSettings = Field(default_factory=MembershipSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    identify: IdentifySettings = Field(default_factory=IdentifySettings)
    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    photos: PhotoSettings = Field(default_factory=PhotoSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    liveness: LivenessSettings = Field(default_factory=LivenessSettings)

    @classmethod
    def groups(cls) -> dict[str, type[Group]]:
        return {name: field.annotation for name, field in cls.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, Group)}

    @classmethod
    def flat_names(cls) -> dict[str, tuple[str, str]]:
        """{flat name, as a keyword argument: (group, field)}; the variable is FACEGATE_ and the name upper-cased."""
        return {variable_name.lower(): (group_name, field)
                for group_name, group in cls.groups().items()
                for field, variable_name in group.variables().items()}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        env_file = getattr(dotenv_settings, "env_file", None)  # the .env file, or Settings(_env_file=...)'s
        return (init_settings, env_settings, GroupVariables(settings_cls, env_file), dotenv_settings,
                file_secret_settings)

    @model_validator(mode="before")
    @classmethod
    def _into_groups(cls, data: Any) -> Any:
        """Flat names (from the variables, or keyword arguments) go to their group's field."""
        if not isinstance(data, dict):
            return data
        data, names = dict(data), cls.flat_names()
        for flat in [key for key in data if key in names]:
            group, field = names[flat]
            grouped = data.get(group)
            grouped = dict(grouped) if isinstance(grouped, dict) else (grouped.model_dump() if grouped else {})
            grouped.setdefault(field, data.pop(flat))
            data[group] = grouped
        return data

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def pipeline_config(self, crop_size: int, chip: Chip) -> PipelineConfig:
        """The faces pipeline as the service runs it, for a model of this input size and chip geometry."""
        fallback = self.photos.fallback_max_pixels
        return PipelineConfig(crop_size=crop_size, chip=chip, detect_max_side=self.photos.detect_max_side,
                              coarse_side=self.photos.detect_coarse_side,
                              adaptive_upsample=self.photos.adaptive_upsample, cnn_fallback=fallback > 0,
                              cnn_max_pixels=fallback or PipelineConfig.cnn_max_pixels)

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        if self.environment == "production" and self.database_url == DEFAULT_DATABASE_URL:
            raise ValueError("FACEGATE_DATABASE_URL must be set explicitly in production")
        if self.environment == "production" and not self.keys.required:
            raise ValueError("FACEGATE_AUTH=false is for a developer's machine; production requires API keys")
        if self.references.store and self.references.keys is None and self.references.keys_file is None:
            raise ValueError("FACEGATE_REFERENCE_STORE=true needs FACEGATE_REFERENCE_KEYS or "
                             "FACEGATE_REFERENCE_KEYS_FILE")
        return self


class GroupVariables(PydanticBaseSettingsSource):
    """The grouped settings' variables (FACEGATE_QUALITY_MAX_YAW...), from the environment and the .env file,
    as flat names: Settings puts each in its group. Variable names are matched in any case, as
    pydantic-settings matches the others."""

    def __init__(self, settings_cls: type[BaseSettings], env_file: str | Path | None) -> None:
        super().__init__(settings_cls)
        self.env_file = env_file

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # not used: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        env_file = self.env_file
        found = dict(dotenv_values(env_file)) if isinstance(env_file, str | Path) and Path(env_file).is_file() else {}
        found.update(os.environ)
        found = {name.upper(): value for name, value in found.items() if value is not None}
        return {flat: found[PREFIX + flat.upper()] for flat in self.settings_cls.flat_names()
                if PREFIX + flat.upper() in found}


@lru_cache
def get_settings() -> Settings:
    return Settings()
