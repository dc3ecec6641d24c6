"""Liveness from a head turn: does a burst of frames answer a challenge's prompts as a real head does?

A challenge asks for 2-3 turns (left, right, in a random order). Each frame of the burst gives the head's
geometry from dlib's five points (`HeadPose.of`); `check_turns` then asks, in order:
- **steady**: the burst starts facing the camera; its first frames give the baseline yaw that turns are
  measured from (a head is rarely exactly frontal to a door camera);
- **continuity**: no step between consecutive frames larger than a head makes between two frames
  (`max_step`): two photos at opposite poses swapped in front of the camera jump;
- **turns**: the yaw reaches `turn` degrees from the baseline in each prompt's direction, in the prompts'
  order, and comes back within `centre` degrees before the next prompt and at the end;
- **depth**: at each turn's peak, the eye line has not shrunk more than a real head's does (`min_spread`,
  against the frontal frames beside the turn). Turning a flat photo far enough to move the nose
  foreshortens the eye line more than a head turning by the same apparent amount: the nose of a photo lies
  in the plane of its eyes;
- **relief**: over the whole burst, the five points move as points of a solid, not of a plane (`relief`, at
  least `min_relief`). A camera's view of a plane is, near enough, an affine map of it: stacked frame by
  frame, a plane's points span two dimensions, a head's three (the nose base stands in front of the eyes).
- **shape** (off unless `min_shape` is set): the same over the 51 inner points of dlib's 68 (brows, eyes, nose,
  mouth), read in each frame's box. A photo folded at the nose is a solid too: 1 in 7 of the benchmark's pass
  the checks above. Over the brows, the nose's ridge and base and the mouth, a fold's two planes show less depth
  than a head, unless it is folded sharply and turned far. The 68-point predictor was trained on iBUG 300-W,
  whose licence excludes commercial use, which is why the check is an operator's choice (docs/liveness.md).

Left and right are the person's own, in an unmirrored camera frame: a head turned to its left shows the
nose nearer the photo's right-hand eye (positive yaw in `model.faces.quality.pose`).

The rules' defaults (model.faces.config.TurnRules) are chosen by `python -m benchmarks.liveness --choose`
(synthetic cards from CelebA, the training side), and reported on LFW cards, the print and tablet stills,
and real webcam turns (docs/liveness.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np

from model.faces.config import FacePolicy, TurnRules
from model.faces.errors import FaceError
from model.faces.pipeline import FaceBox, FacePipeline, StageTimer, key_points, untimed
from model.faces.prepare import choose_face
from model.faces.quality import pose

Check = Literal["steady", "continuity", "turns", "depth", "relief", "shape"]
CHECKS: tuple[Check, ...] = ("steady", "continuity", "turns", "depth", "relief", "shape")
INNER = slice(17, 68)  # of dlib's 68 points, all but the jaw line: its points slide along a turning head's outline
SHIPPED = TurnRules()


class Prompt(StrEnum):
    LEFT = "left"
    RIGHT = "right"

    @property
    def sign(self) -> int:
        return 1 if self is Prompt.LEFT else -1


@dataclass(frozen=True)
class HeadPose:
    """One frame's head geometry.

    yaw:    degrees, from where the nose base sits between the eyes (positive: turned to the person's left);
    spread: the eye distance over the nose base's drop below the eye line. A head turning shrinks it (the eye
            line foreshortens, the drop does not); nodding changes it too, which is why a turn's peak is
            compared with the same burst's frontal frames, not with a constant.
    """

    yaw: float
    spread: float
    landmarks: tuple[tuple[float, float], ...] = ()  # the five points it was read from (the relief check's)
    shape: tuple[tuple[float, float], ...] = ()  # dlib's 68 points, where they were read (the shape check's)

    @classmethod
    def of(cls, landmarks: Sequence[tuple[float, float]], shape: Sequence[tuple[float, float]] = ()) -> HeadPose:
        left, right, nose = key_points(np.asarray(landmarks, dtype=np.float64))
        eyes = right - left
        distance = float(np.hypot(*eyes)) or 1.0
        drop = abs(float(eyes[0] * (nose - left)[1] - eyes[1] * (nose - left)[0])) / distance
        yaw, _ = pose(tuple(landmarks))  # the quality checks' yaw
        return cls(yaw=yaw, spread=distance / max(drop, 1e-6), landmarks=tuple(map(tuple, landmarks)),
                   shape=tuple(map(tuple, shape)))


@dataclass(frozen=True)
class Verdict:
    passed: bool
    check: Check | None = None  # the first check that failed
    detail: str = ""
    peaks: tuple[float, ...] = ()  # each answered turn's yaw from the baseline
    frontal: tuple[int, ...] = ()  # the frames facing the camera (within `centre` of the baseline)


class BurstFaces:
    """A burst's one face, frame by frame, under `policy` (its multi-face rule should be reject: a second face is
    someone else in the burst). Errors name the frame. One frame at a time, so that a burst's decoded frames need
    not all be held at once; `face` may be called from several threads at once."""

    def __init__(self, pipeline: FacePipeline, policy: FacePolicy, timer: StageTimer = untimed) -> None:
        self.pipeline, self.policy, self.timer = pipeline, policy, timer
        self.frames = 0

    def next(self, rgb: np.ndarray) -> FaceBox:
        """The face of the frame after the last one `next` was given."""
        self.frames += 1
        return self.face(self.frames, rgb)

    def face(self, number: int, rgb: np.ndarray) -> FaceBox:
        """The face of frame `number` (from 1)."""
        try:
            with self.timer("detect"):
                return choose_face(self.pipeline.detect(rgb, self.timer, self.policy), self.policy, rgb.shape)
        except FaceError as exc:
            exc.message = f"frame {number}: {exc.message}"
            raise


def fewest_frames(prompts: int, rules: TurnRules = SHIPPED) -> int:
    """The fewest frames that can answer `prompts` turns: the steady start, then each turn and its return."""
    return rules.baseline_frames + 2 * prompts


def _out_of_plane(frames: Sequence[np.ndarray]) -> float:
    """The third singular value over the second of the frames' points, each frame's centred and scaled to unit
    norm, stacked (2 rows a frame, a column a point). Under an affine camera, a rigid plane's points give a
    matrix of rank 2 and a rigid solid's rank 3."""
    rows = []
    for points in frames:
        points = points - points.mean(axis=0)
        rows.append(points.T / (np.linalg.norm(points) or 1.0))
    values = np.linalg.svd(np.concatenate(rows), compute_uv=False)
    return float(values[2] / values[1]) if values[1] > 0 else 0.0


def relief(poses: Sequence[HeadPose]) -> float:
    """How far a burst's five points leave a plane (`_out_of_plane`). A photo, held or turned, reads little (its
    perspective, and the landmarks' own noise), and a head turning reads more the more it turns: the real webcam
    turns' bursts read at least 0.036 in 99 of 100 (median 0.049), photos held as cards 0.027 at the median
    (docs/liveness.md)."""
    if not all(len(p.landmarks) == 5 for p in poses):
        raise ValueError("the relief check needs each frame's five landmarks (HeadPose.of)")
    return _out_of_plane([np.asarray(p.landmarks, dtype=np.float64) for p in poses])


def shape_relief(poses: Sequence[HeadPose]) -> float:
    """How far a burst's 51 inner points of dlib's 68 leave a plane (`_out_of_plane`). The real webcam turns'
    bursts read at least 0.109 (median 0.132), and their frames facing the camera alone 0.02-0.07; photos folded
    at the nose that pass the five-point checks read less (docs/liveness.md)."""
    if not all(len(p.shape) == 68 for p in poses):
        raise ValueError("the shape check needs each frame's 68 points (HeadPose.of, with FacePipeline.shape)")
    return _out_of_plane([np.asarray(p.shape, dtype=np.float64)[INNER] for p in poses])


def _centre_run(yaws: Sequence[float], start: int, step: int, centre: float) -> list[int]:
    """The first stretch of frames within `centre` of the baseline, from `start` going `step` (+1 or -1)."""
    i = start
    while 0 <= i < len(yaws) and abs(yaws[i]) > centre:
        i += step
    run = []
    while 0 <= i < len(yaws) and abs(yaws[i]) <= centre:
        run.append(i)
        i += step
    return run


def check_turns(poses: Sequence[HeadPose], prompts: Sequence[Prompt], rules: TurnRules = SHIPPED) -> Verdict:
    """Whether `poses` (one per frame, in order) answer `prompts` as a real head would."""
    if len(poses) < fewest_frames(len(prompts), rules):
        return Verdict(False, "turns", f"{len(poses)} frames cannot show {len(prompts)} turns and the returns")
    base_yaw = float(np.median([p.yaw for p in poses[:rules.baseline_frames]]))
    yaws = [p.yaw - base_yaw for p in poses]
    if max(abs(y) for y in yaws[:rules.baseline_frames]) > rules.centre:
        return Verdict(False, "steady", "the first frames do not face the camera steadily")
    for i in range(1, len(yaws)):
        step = abs(yaws[i] - yaws[i - 1])
        if step > rules.max_step:
            return Verdict(False, "continuity", f"the head jumps {step:.0f} degrees between frames {i} and {i + 1}")
    i, peaks = rules.baseline_frames, []
    for number, prompt in enumerate(prompts, start=1):
        # Find the turn: frames until the yaw passes `turn` this way; the wrong way first fails.
        while i < len(yaws) and prompt.sign * yaws[i] < rules.turn:
            if -prompt.sign * yaws[i] >= rules.turn:
                return Verdict(False, "turns", f"prompt {number} ({prompt}): the head turned the other way")
            i += 1
        if i == len(yaws):
            return Verdict(False, "turns", f"prompt {number} ({prompt}): no turn reaches {rules.turn:g} degrees")
        first = i
        while i < len(yaws) and abs(yaws[i]) > rules.centre:  # the turn lasts until the head is back
            i += 1
        if i == len(yaws):
            return Verdict(False, "turns", f"prompt {number} ({prompt}): the head does not come back")
        turn = range(first, i)
        peak = max(turn, key=lambda k: prompt.sign * yaws[k])
        # The eye line at the peak, against the frontal frames on either side of the turn: the stretch with
        # the narrower eye line, since a nod in one of them widens it, and would fail a real turn.
        before = _centre_run(yaws, first - 1, -1, rules.centre)
        after = _centre_run(yaws, i, 1, rules.centre)
        frontal = min(float(np.median([poses[k].spread for k in run])) for run in (before, after) if run)
        spread = poses[peak].spread / frontal
        if spread < rules.min_spread:
            return Verdict(False, "depth", f"prompt {number} ({prompt}): the eye line shrank to {spread:.2f} of "
                                           f"its frontal width at a {abs(yaws[peak]):.0f}-degree turn: flat")
        peaks.append(yaws[peak])
    if rules.min_relief and (solid := relief(poses)) < rules.min_relief:
        return Verdict(False, "relief", f"the face moved as a flat picture does, not as a head (relief {solid:.3f}, "
                                        f"under {rules.min_relief:g})")
    if rules.min_shape and (solid := shape_relief(poses)) < rules.min_shape:
        return Verdict(False, "shape", f"the face's shape moved as a folded or curved picture's does, not as a "
                                       f"head's (shape relief {solid:.3f}, under {rules.min_shape:g})")
    frontal = tuple(k for k, yaw in enumerate(yaws) if abs(yaw) <= rules.centre)
    return Verdict(True, peaks=tuple(peaks), frontal=frontal)
