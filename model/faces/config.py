"""The settings of the faces pipeline, as plain data: importing this module loads neither torch nor dlib.

The service's Settings, the CLIs and the training configs build these; `model.faces.prepare` runs them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from model.card.keys import AUGMENTS, Augment  # noqa: F401 - the augmentations, named where the views are

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# The default embedder: dlib's face ResNet, ported to PyTorch (model.release.import_dlib).
DEFAULT_MODEL = WEIGHTS_DIR / "facegate-resnet.pt"
# The fast option: the distilled MobileFaceNet.
FAST_MODEL = WEIGHTS_DIR / "facegate-mfn.pt"

# How a face becomes the network's input; a model card names the one its network was trained on.
#   fg-align-v1:  our similarity alignment of the eyes and nose base onto a 112-px template, at any size;
#   dlib-chip-v1: dlib's own face chip (get_face_chip_details: 150 px, padding 0.25, 5-point alignment),
#                 extracted by dlib itself, so that the ported network sees exactly what dlib's did.
Chip = Literal["fg-align-v1", "dlib-chip-v1"]
CHIPS: tuple[Chip, ...] = ("fg-align-v1", "dlib-chip-v1")
# dlib's chip as its face ResNet takes it (dlib's face_recognition.cpp). The same geometry at another size
# (PipelineConfig.crop_size) is the input of a student distilled from that network.
DLIB_CHIP_SIZE, DLIB_CHIP_PADDING = 150, 0.25

# Test-time augmentation: "flip" embeds the face and its mirror; "views" adds small shifts, rotations and
# zooms of the chip (and their mirrors). The embeddings are averaged before they are normalised. The card
# calibrates each (model.card.keys.AUGMENTS).

MultiFace = Literal["reject", "dominant", "centre"]

# The network's arithmetic: auto is fp16 on a GPU and, on the CPU, int8 (the card's quantized copy, run by ONNX
# Runtime) where the card calibrated one and the CPU runs it exactly (model.faces.embedder.int8_is_exact), fp32
# otherwise; fp32 is the reference the release tools calibrate with; bf16 is another option of the CPU's.
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class PipelineConfig:
    crop_size: int = 112  # the chip's side in pixels, in either geometry (dlib's network takes 150)
    chip: Chip = "fg-align-v1"
    detect_max_side: int = 640  # detection runs on a copy no larger than this
    upsample: int = 1  # HOG pyramid upsampling; 1 finds faces down to about 40 px
    # First look without upsampling (faces of 80 px and more, a quarter of the cost); upsample only when
    # that finds nothing.
    adaptive_upsample: bool = True
    # A first look on a copy of at most this side (0: none), where a face that fills much of the frame is found
    # at a fraction of the cost (HOG's grows with the pixels: 640 px take 6x 250 px). Its faces stand only when
    # no face it is too coarse to see could change the face policy's choice (FacePolicy.settled_by); otherwise
    # the usual look at detect_max_side follows. It runs only where its copy has at most half the usual look's
    # pixels. Off by default: it pays on close-ups (LFW's framing at 640 px: 34 -> 14 ms) and costs where faces
    # are small in the frame (CelebA in the wild, the real webcam frames: 5-20 % more); python -m
    # benchmarks.detection measures both, docs/benchmarks.md has the figures.
    coarse_side: int = 0
    cnn_fallback: bool = True  # MMOD CNN detector when HOG finds no face
    # The fallback's budget. Its time is proportional to the pixels it looks at; the photo is scaled to this
    # many, upsampled at most 2x. Chosen on CelebA-wild's HOG misses (python -m benchmarks.fallback), when dlib's
    # own detector took about 4 us a pixel on 2 AMD EPYC cores (100,000: 0.38 s, at most 0.51 s): it finds more
    # of them than the rule it replaced (a 400 px copy, upsampled when under 300 px), which took 1.1 s on a
    # 250 px photo. The PyTorch port (model.faces.mmod) takes about 0.6 us a pixel on one core.
    cnn_max_pixels: int = 100_000

    @property
    def upsample_schedule(self) -> tuple[int, ...]:
        return (0, self.upsample) if self.adaptive_upsample and self.upsample > 0 else (self.upsample,)

    @property
    def detection(self) -> dict:
        """What decides which faces are found and where their landmarks are: the detections cache's key."""
        return {k: v for k, v in self.__dict__.items() if k not in ("crop_size", "chip")}


@dataclass(frozen=True)
class FacePolicy:
    """Which face of a photo is used, and which photos are refused.

    reject:   a photo with two or more faces is refused;
    dominant: the largest face is used when its area is at least `dominant_ratio` times the next one's,
              otherwise the photo is refused (the service's default: a door asks for a clearer photo rather
              than guess who the subject is);
    centre:   the face nearest the photo's centre is used. Research sets are framed on their labelled
              person (LFW is centred on it by construction), so evaluation and training use this.
    """

    multi_face: MultiFace = "dominant"
    dominant_ratio: float = 2.0
    min_face_size: int = 40
    max_pixels: int = 40_000_000
    max_decode_bytes: int = 160 * 2**20  # memory one decode may take (model.faces.decode)

    @property
    def needs_every_face(self) -> bool:
        """`reject` and `centre` choose by every face of the photo, however small; `dominant` only by those
        that could contest the largest."""
        return self.multi_face != "dominant"

    def settled_by(self, largest_area: float, smallest_seen: float) -> bool:
        """Whether a look that finds faces of `smallest_seen` px and more, and whose largest face has
        `largest_area` px², settles this policy's choice: when a face it missed (smaller than `smallest_seen`)
        could not contest the largest."""
        return not self.needs_every_face and largest_area >= self.dominant_ratio * smallest_seen**2


# The service's: app.core.config's defaults build exactly this one. Evaluation and calibration use it too, so
# that their figures are the service's, refusals included.
SERVICE_POLICY = FacePolicy()
# Training, and `model.evaluation --policy centre` (figures comparable with published ones): the labelled person
# is the centred face of a research photo; small faces are still faces.
DATASET_POLICY = FacePolicy(multi_face="centre", min_face_size=1, max_pixels=50_000_000)


@dataclass(frozen=True)
class Views:
    """Test-time views of a chip: (dx, dy) shifts as a fraction of the chip, rotations in degrees, zooms."""

    shifts: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    rotations: tuple[float, ...] = ()
    zooms: tuple[float, ...] = ()
    flip: bool = False

    @property
    def framings(self) -> int:
        """Views the pipeline aligns; mirrors are the embedder's, and double them when `flip`."""
        return len(self.shifts) + len(self.rotations) + len(self.zooms)

    @property
    def to_align(self) -> Views | None:
        """What the pipeline must align for one face: these views, or None for the plain chip."""
        return self if self.framings > 1 else None

    @classmethod
    def of(cls, augment: Augment) -> Views:
        if augment == "none":
            return cls()
        if augment == "flip":
            return cls(flip=True)
        # Five framings, each with its mirror: ten views.
        return cls(shifts=((0.0, 0.0), (0.03, 0.0), (-0.03, 0.0)), zooms=(0.95, 1.05), flip=True)


@dataclass(frozen=True)
class Quality:
    """A face's fitness as a reference (measured by model.faces.quality)."""

    face_size: int
    sharpness: float
    yaw: float
    roll: float
    brightness: float
    contrast: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class QualityCheck:
    """One check of a QualityPolicy on one face."""

    name: str  # face_size, sharpness, yaw, roll or brightness
    bound: str  # "min" or "max": the value must be at least, or at most, the limit
    limit: float
    value: float  # yaw and roll as magnitudes
    passed: bool
    text: str  # the measurement and the limit, in words


@dataclass(frozen=True)
class QualityPolicy:
    """The least a reference photo must offer; a check with None is not made."""

    min_face_size: int | None = None
    min_sharpness: float | None = None
    max_yaw: float | None = None
    max_roll: float | None = None
    min_brightness: float | None = None
    max_brightness: float | None = None

    def checks(self, q: Quality) -> list[QualityCheck]:
        """Every check this policy makes, passed or not, with the value, the limit and a sentence."""
        made = [
            ("face_size", "min", self.min_face_size, q.face_size, "face size {v:.0f} px", " is below {l:g}"),
            ("sharpness", "min", self.min_sharpness, q.sharpness, "sharpness {v:.0f}", " is below {l:g}"),
            ("yaw", "max", self.max_yaw, abs(q.yaw), "the head is turned {v:.0f} degrees",
             "; at most {l:g} are accepted"),
            ("roll", "max", self.max_roll, abs(q.roll), "the head is tilted {v:.0f} degrees",
             "; at most {l:g} are accepted"),
            ("brightness", "min", self.min_brightness, q.brightness, "brightness {v:.0f}",
             " is below {l:g} (too dark)"),
            ("brightness", "max", self.max_brightness, q.brightness, "brightness {v:.0f}",
             " is above {l:g} (overexposed)"),
        ]
        out = []
        for name, bound, limit, value, measured, falls_short in made:
            if limit is None:
                continue
            passed = value >= limit if bound == "min" else value <= limit
            allowed = f"at least {limit:g}" if bound == "min" else f"at most {limit:g}"
            text = measured.format(v=value) + (f" ({allowed})" if passed else falls_short.format(l=limit))
            out.append(QualityCheck(name, bound, float(limit), float(value), passed, text))
        return out

    def failures(self, q: Quality) -> list[str]:
        """What falls short, and by how much, in words; empty when the face passes."""
        return [check.text for check in self.checks(q) if not check.passed]


# TurnRules.min_shape as chosen on the training side's attacks and the real turns (python -m benchmarks.liveness
# --choose), for an operator who may use dlib's 68-point predictor: FACEGATE_LIVENESS_MIN_SHAPE.
MEASURED_MIN_SHAPE = 0.1


@dataclass(frozen=True)
class TurnRules:
    """What a burst of frames must show to pass the head-turn challenge (model.faces.liveness), in degrees of
    yaw and ratios of the eye line's spread."""

    turn: float = 11.0  # how far each turn reaches from the baseline
    centre: float = 8.0  # how near the baseline a head is back between turns, and first
    max_step: float = 40.0  # the largest change of yaw between consecutive frames
    min_spread: float = 0.85  # a turn's peak: its spread over the frontal frames' beside it, at least
    min_relief: float = 0.034  # the burst's five points out of a plane (model.faces.liveness.relief), at least
    # The same over 51 of dlib's 68 points (model.faces.liveness.shape_relief), at least; 0, as shipped, turns
    # the check off: the 68-point predictor's training data excludes commercial use (docs/liveness.md).
    min_shape: float = 0.0
    baseline_frames: int = 2  # the first frames, whose median yaw is the baseline

    def __post_init__(self) -> None:
        # A turn starts where the yaw passes `turn` and lasts while it is beyond `centre`: at or within the
        # centre band, a turn would end where it starts.
        if not 0 < self.centre < self.turn:
            raise ValueError(f"a turn must reach beyond the centre band: 0 < centre < turn, got centre "
                             f"{self.centre:g} and turn {self.turn:g}")
        if self.baseline_frames < 1:
            raise ValueError(f"the baseline needs at least one frame, got {self.baseline_frames}")
