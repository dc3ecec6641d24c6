"""Face datasets: identity folders read from directories or straight from .tar archives, the LFW View 2
pairs reader, and the on-disk cache of aligned crops that makes later runs start fast.

Every photo goes through the service's own steps (`model.faces.prepare`): decode, detect, choose the face
under a policy, align. The cache lives outside the repository (research data must never be committed): every
function here is told which folder (`cache`); the tools take `--cache` and default to `DEFAULT_CACHE`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tarfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.faces.config import DATASET_POLICY, FacePolicy, PipelineConfig, Views
from model.faces.decode import decode_image
from model.faces.errors import FaceError, NoFaceDetected
from model.faces.pipeline import FaceBox, FacePipeline
from model.faces.prepare import find_face

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Validation: the CelebA-wild identities, with their photos in both CelebA archives (the identity numbers
# are shared). Models are chosen and thresholds calibrated on them; training holds them out; LFW stays test.
VALIDATION_SOURCES = ("celeba-wild.tar", "celeba-aligned.tar")
CACHE_FORMAT = 2  # 2: the face is chosen by a FacePolicy (1: always the largest)


DEFAULT_CACHE = Path.home() / ".cache" / "facegate"


def iter_images(source: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of every photo in a folder or a .tar archive, in sorted order."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            yield path.relative_to(source).as_posix(), path.read_bytes()
        return
    with tarfile.open(source) as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)),
            key=lambda m: m.name,
        )
        for member in members:
            handle = archive.extractfile(member)
            if handle is not None:
                yield member.name, handle.read()


def identity_of(relative_path: str) -> str:
    """`[<dataset>/]<identity>/<file>` -> identity: the photo's folder."""
    parts = relative_path.split("/")
    return parts[-2] if len(parts) >= 2 else ""


@dataclass
class FaceSet:
    """Detections of one source, row-aligned arrays. Crop size does not enter: see `aligned_crops`."""

    paths: np.ndarray  # (N,) str: path inside the source
    labels: np.ndarray  # (N,) str: identity, "" when unknown
    found: np.ndarray  # (N,) bool: a face was found
    detector: np.ndarray  # (N,) str: "hog", "cnn" or ""
    boxes: np.ndarray  # (N, 4) int32 x, y, w, h of the face the policy chose
    landmarks: np.ndarray  # (N, 5, 2) float32 dlib's five points
    teacher: np.ndarray  # (N, 128) float32 dlib descriptors; zeros where no face was found

    def __len__(self) -> int:
        return len(self.paths)

    def face(self, row: int) -> FaceBox:
        x, y, w, h = (int(v) for v in self.boxes[row])
        points = tuple((float(px), float(py)) for px, py in self.landmarks[row])
        return FaceBox(x, y, w, h, 0.0, points, str(self.detector[row]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f: getattr(self, f) for f in self.__dataclass_fields__})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FaceSet:
        with np.load(path, allow_pickle=False) as data:
            return cls(*(data[f] for f in cls.__dataclass_fields__))


def has_descriptor(teacher: np.ndarray) -> np.ndarray:
    """Rows of a teacher array that hold a dlib descriptor (the others are zeros: no face was found)."""
    return np.abs(teacher).sum(axis=1) > 0


def cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_id(source: Path) -> list:
    stat = source.stat()
    return [str(source.resolve()), stat.st_size, int(stat.st_mtime)]


_worker: dict = {}


def _init_worker(config: PipelineConfig, policy: FacePolicy, with_teacher: bool) -> None:
    from model.faces.reference import DlibEmbedder

    _worker["pipeline"], _worker["policy"] = FacePipeline(config), policy
    _worker["teacher"] = DlibEmbedder() if with_teacher else None


def _detect(item: tuple[str, bytes]) -> tuple[FaceBox | None, np.ndarray | None]:
    """One photo -> the policy's face and, if asked, that face's dlib descriptor."""
    path, data = item
    try:
        rgb, face = find_face(data, _worker["pipeline"], _worker["policy"])
    except NoFaceDetected:
        return None, None
    except FaceError as exc:
        log.warning("%s: %s", path, exc)
        return None, None
    teacher = _worker["teacher"]
    return face, (teacher.embed(rgb, face) if teacher is not None else None)


def _init_aligner(config: PipelineConfig, views: Views | None) -> None:
    _worker["pipeline"], _worker["views"] = FacePipeline(config), views


def _align(item: tuple[bytes, FaceBox]) -> np.ndarray:
    data, face = item
    rgb = decode_image(data, max_pixels=DATASET_POLICY.max_pixels, max_bytes=DATASET_POLICY.max_decode_bytes)
    return _worker["pipeline"].align(rgb, face, _worker["views"])


@contextmanager
def _process_pool(processes: int | None, initializer, initargs) -> Iterator[ProcessPoolExecutor]:  # noqa: ANN001
    """Worker processes, stopped on the way out: the photos not started are dropped, those in hand finish. Not
    multiprocessing.Pool, whose terminate() (what leaving it early calls) can hang for ever when it kills a
    worker that is sending a result (CPython issue 96995)."""
    pool = ProcessPoolExecutor(processes or os.cpu_count() or 1, mp_context=multiprocessing.get_context("fork"),
                               initializer=initializer, initargs=initargs)
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


def detections_path(cache: Path, source: Path, config: PipelineConfig, policy: FacePolicy,
                    with_teacher: bool) -> Path:
    """Where the detections of `source` are cached. The chip geometry does not enter: chips are made later."""
    key = cache_key(source_id(source), CACHE_FORMAT, config.detection, policy.__dict__, with_teacher)
    return cache / f"{source.name.split('.')[0]}-detections-{key}.npz"


def detect_source(source: Path, *, cache: Path, labelled: bool = True, config: PipelineConfig | None = None,
                  policy: FacePolicy = DATASET_POLICY, with_teacher: bool = True,
                  processes: int | None = None) -> FaceSet:
    """Detections (and dlib descriptors) of every photo in `source`, from the cache when it has them.

    Labels are the photos' folders; `labelled=False` blanks them (a folder of unrelated people).
    """
    config = config or PipelineConfig()
    target = detections_path(cache, source, config, policy, with_teacher)
    # Detections made with the teacher serve just as well without it.
    cached = next((p for p in (target, detections_path(cache, source, config, policy, True)) if p.exists()), None)
    faces = FaceSet.load(cached) if cached else _detect_all(source, config, policy, with_teacher, processes, target)
    if not labelled:
        faces.labels = np.full(len(faces), "", dtype=faces.labels.dtype)
    return faces


def _detect_all(source: Path, config: PipelineConfig, policy: FacePolicy, with_teacher: bool, processes: int | None,
                target: Path) -> FaceSet:
    items = list(iter_images(source))
    log.info("detecting faces in %d photos of %s -> %s", len(items), source, target)
    n = len(items)
    found, detectors = np.zeros(n, bool), np.full(n, "", dtype="<U3")
    boxes, landmarks = np.zeros((n, 4), np.int32), np.zeros((n, 5, 2), np.float32)
    teacher_vectors = np.zeros((n, 128), np.float32)
    with _process_pool(processes, _init_worker, (config, policy, with_teacher)) as pool:
        for i, (face, descriptor) in enumerate(pool.map(_detect, items, chunksize=16)):
            if face is not None:
                found[i], detectors[i] = True, face.detector
                boxes[i] = (face.x, face.y, face.width, face.height)
                landmarks[i] = face.landmarks
            if descriptor is not None:
                teacher_vectors[i] = descriptor
            if (i + 1) % 1000 == 0:
                log.info("%s: %d/%d", source.name, i + 1, n)
    paths = np.array([p for p, _ in items])
    labels = np.array([identity_of(p) for p in paths])
    faces = FaceSet(paths, labels, found, detectors, boxes, landmarks, teacher_vectors)
    faces.save(target)
    log.info("%s: %d photos, %d without a face (%d found by the CNN fallback)", source.name, n,
             int((~found).sum()), int((detectors == "cnn").sum()))
    return faces


def iter_chips(source: Path, faces: FaceSet, config: PipelineConfig, *, views: Views | None = None,
               processes: int | None = None, chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, chips) of the detected faces, `chunk` at a time, made by the pipeline's own `align`.

    Chips are (n, S, S, 3) uint8, or (n, V, S, S, 3) with `views`. Worker processes decode and align.
    """
    by_path = dict(iter_images(source))
    wanted = np.flatnonzero(faces.found)
    items = ((by_path[str(faces.paths[i])], faces.face(i)) for i in wanted)
    with _process_pool(processes, _init_aligner, (config, views)) as pool:
        chips = pool.map(_align, items, chunksize=16)
        for start in range(0, len(wanted), chunk):
            rows = wanted[start:start + chunk]
            yield rows, np.stack([next(chips) for _ in rows])


def aligned_crops(source: Path, faces: FaceSet, config: PipelineConfig, *, cache: Path,
                  processes: int | None = None) -> np.ndarray:
    """(N, S, S, 3) uint8 chips of every detected face (zeros where none was found), cached on disk."""
    key = cache_key(source_id(source), CACHE_FORMAT, config.chip, config.crop_size,
                     hashlib.sha256(faces.landmarks.tobytes()).hexdigest())
    target = cache / f"{source.name.split('.')[0]}-crops{config.crop_size}-{key}.npy"
    if target.exists():
        return np.load(target)
    crops = np.zeros((len(faces), config.crop_size, config.crop_size, 3), np.uint8)
    for rows, chips in iter_chips(source, faces, config, processes=processes):
        crops[rows] = chips
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, crops)
    return crops


# --- LFW View 2 -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    a: str  # path relative to the dataset root, e.g. "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
    b: str
    same: bool
    fold: int


def lfw_path(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


def read_lfw_pairs(path: Path) -> list[Pair]:
    """The official View 2 file: a header `folds n`, then per fold n same and n different pairs."""
    lines = path.read_text().strip().splitlines()
    folds, per_fold = (int(x) for x in lines[0].split())
    pairs = []
    for index, line in enumerate(lines[1:]):
        fields = line.split("\t")
        fold = index // (2 * per_fold)
        if len(fields) == 3:
            pairs.append(Pair(lfw_path(fields[0], int(fields[1])), lfw_path(fields[0], int(fields[2])), True, fold))
        elif len(fields) == 4:
            pairs.append(Pair(lfw_path(fields[0], int(fields[1])), lfw_path(fields[2], int(fields[3])), False, fold))
        else:
            raise ValueError(f"{path}:{index + 2}: expected 3 or 4 tab-separated fields, got {len(fields)}")
    if len(pairs) != folds * 2 * per_fold:
        raise ValueError(f"{path}: header promises {folds * 2 * per_fold} pairs, found {len(pairs)}")
    return pairs


def read_generic_pairs(path: Path, folds: int = 10) -> list[Pair]:
    """`pathA<TAB>pathB<TAB>same` (same is 1/0 or true/false); pairs are dealt into folds round-robin."""
    pairs = []
    for index, line in enumerate(p for p in path.read_text().splitlines() if p.strip()):
        a, b, same = line.split("\t")
        pairs.append(Pair(a, b, same.strip().lower() in ("1", "true", "yes", "same"), index % folds))
    return pairs


def lfw_people_in_pairs(pairs: list[Pair]) -> set[str]:
    return {p.split("/")[0] for pair in pairs for p in (pair.a, pair.b)}


def without_root(paths: np.ndarray) -> list[str]:
    """Drop an archive's top folder so paths read `<Person>/<file>` like the pairs file."""
    return [p.split("/", 1)[1] if p.count("/") >= 2 else p for p in paths]
