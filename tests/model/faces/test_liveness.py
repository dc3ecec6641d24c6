"""The head-turn check on hand-built trajectories (model.faces.liveness), and the head geometry it reads."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from model.faces.config import MEASURED_MIN_SHAPE, TurnRules
from model.faces.liveness import HeadPose, Prompt, check_turns, fewest_frames, relief, shape_relief

# min_relief 0: the hand-built trajectories below have no landmarks; the relief tests give them their own
RULES = TurnRules(turn=12.0, centre=8.0, max_step=40.0, min_spread=0.8, baseline_frames=2, min_relief=0.0)
LEFT, RIGHT = Prompt.LEFT, Prompt.RIGHT


def burst(*yaws: float, spread: float = 1.4, peak_spread: float | None = None) -> list[HeadPose]:
    """Frames at these yaws; a frame past the turn threshold has `peak_spread` (default: a real head's 0.9)."""
    turned = spread * 0.9 if peak_spread is None else peak_spread
    return [HeadPose(yaw, turned if abs(yaw - yaws[0]) >= RULES.turn else spread) for yaw in yaws]


def test_a_head_that_turns_left_then_right_passes():
    verdict = check_turns(burst(3, 2, 10, 18, 4, 1, -15, -24, -5, 2), [LEFT, RIGHT], RULES)
    assert verdict.passed and verdict.check is None
    assert verdict.peaks == pytest.approx((15.5, -26.5))  # from the baseline, the first two frames' median 2.5
    assert verdict.frontal == (0, 1, 2, 4, 5, 8, 9)


def test_the_baseline_is_the_first_frames_so_a_head_turned_from_the_start_is_measured_from_there():
    assert check_turns(burst(20, 21, 35, 20, 5, 20), [LEFT, RIGHT], RULES).passed


@pytest.mark.parametrize(("yaws", "prompts", "check"), [
    ((0, 1, -15, 0, 15, 0), [LEFT, RIGHT], "turns"),  # the other way first
    ((0, 1, 15, 0, 10, 0), [LEFT, RIGHT], "turns"),  # the second turn falls short of 12 degrees
    ((0, 1, 15, 14, 16), [LEFT], "turns"),  # never comes back
    ((0, 1, 15, 0, -15), [LEFT, RIGHT], "turns"),  # the last turn does not come back
    ((0, 20, 20, 0, -15, 0), [LEFT, RIGHT], "steady"),  # not facing the camera at first
    ((0, 1, 45, 0, -15, 0), [LEFT, RIGHT], "continuity"),  # a 44-degree jump: two photos swapped
    ((0, 1, 15, 0), [LEFT, RIGHT], "turns"),  # too few frames for two turns
])
def test_what_fails(yaws, prompts, check):
    assert check_turns(burst(*yaws), prompts, RULES).check == check


def test_a_turn_must_reach_beyond_the_centre_band():
    for turn, centre in ((6.0, 8.0), (8.0, 8.0), (8.0, 0.0)):
        with pytest.raises(ValueError, match="beyond the centre band"):
            TurnRules(turn=turn, centre=centre)
    with pytest.raises(ValueError, match="at least one frame"):
        TurnRules(baseline_frames=0)
    rules = replace(RULES, turn=8.5)  # just beyond the band: a turn of 9 degrees is one frame long
    assert check_turns(burst(0, 0, 9, 0, -9, 0), [LEFT, RIGHT], rules).passed


def test_a_turn_whose_eye_line_shrinks_like_a_card_fails_the_depth_check():
    flat = burst(0, 1, 6, 13, 2, 0, -13, 0, peak_spread=1.4 * 0.7)
    verdict = check_turns(flat, [LEFT, RIGHT], RULES)
    assert (verdict.passed, verdict.check) == (False, "depth")
    assert "shrank to 0.70" in verdict.detail


def test_the_depth_check_compares_with_the_narrower_frontal_stretch_beside_the_turn():
    """A nod widens the eye line over the nose drop; the stretch after the turn, nodding, is not the measure."""
    poses = [HeadPose(0, 1.4), HeadPose(1, 1.4), HeadPose(15, 1.26), HeadPose(0, 2.0), HeadPose(0, 2.0),
             HeadPose(-15, 1.26), HeadPose(0, 1.4)]
    assert check_turns(poses, [LEFT, RIGHT], RULES).passed


def test_fewest_frames():
    assert fewest_frames(2, RULES) == 6 and fewest_frames(3, RULES) == 8


def test_head_pose_reads_yaw_and_spread_from_five_points():
    # eyes 40 px apart at y=100 (corners 10 px wide), the nose base 30 px below, a quarter of the way from the
    # photo's left eye: turned to the person's right
    left, right = ((90.0, 100.0), (110.0, 100.0)), ((130.0, 100.0), (150.0, 100.0))
    nose = (110.0, 130.0)
    pose = HeadPose.of((*right, *left, nose))  # dlib's order need not put the photo's left eye first
    assert pose.spread == pytest.approx(40 / 30)
    assert pose.yaw == pytest.approx(math.degrees(math.atan((0.25 - 0.5) / 0.5)))
    assert HeadPose.of((*left, *right, (120.0, 130.0))).yaw == pytest.approx(0.0)


# Five points of a face in 3-D, in units of the eye distance (x to the person's left, y down, z towards the
# camera): eye corners and the nose base, which stands in front of the eyes on a head and in their plane on a
# photo.
HEAD = np.array([(-0.65, 0, -0.3), (-0.25, 0, -0.15), (0.65, 0, -0.3), (0.25, 0, -0.15), (0, 0.6, 0.2)])
PHOTO = HEAD * (1, 1, 0)
TURNS = (0, 1, 8, 16, 24, 12, 2, 0, -10, -20, -26, -12, 0, 1)  # degrees, as the head of a left-right challenge


def filmed(points: np.ndarray, yaws, distance: float = 8.0) -> list[tuple[tuple[float, float], ...]]:
    """The points turned by each yaw and filmed by a pinhole camera `distance` eye-widths away, 100 px a unit."""
    frames = []
    for yaw in np.radians(yaws):
        c, s = math.cos(yaw), math.sin(yaw)
        x, y, z = points[:, 0] * c + points[:, 2] * s, points[:, 1], -points[:, 0] * s + points[:, 2] * c
        scale = 100 * distance / (distance - z)
        frames.append(tuple(zip((320 + x * scale).tolist(), (240 + y * scale).tolist(), strict=True)))
    return frames


def read(points: np.ndarray, yaws, distance: float = 8.0) -> float:
    return relief([HeadPose.of(frame) for frame in filmed(points, yaws, distance)])


def test_relief_tells_a_turning_head_from_a_turning_photo():
    """From 8 eye widths (a face about half a metre away); a plane's view is affine but for its perspective, which
    a photo held nearer the camera gains (docs/liveness.md)."""
    shipped = TurnRules().min_relief
    assert read(HEAD, TURNS) > 2 * shipped
    assert read(PHOTO, TURNS) < shipped / 1.5
    assert read(PHOTO, TURNS, distance=100) < 0.05 * shipped  # far away: nearly affine, nearly rank 2
    assert read(HEAD, [0] * len(TURNS)) < 1e-9  # a head that does not turn shows no more depth than a photo


def test_a_burst_that_answers_the_turns_as_a_flat_picture_fails_the_relief_check():
    """The yaw and the eye line read as a head's (a photo folded or curved can fake those), the five points
    move as a plane's: refused; the same readings with a head's points pass."""
    rules = replace(RULES, min_relief=TurnRules().min_relief)
    readings = burst(*TURNS)
    as_photo = [replace(pose, landmarks=points) for pose, points in zip(readings, filmed(PHOTO, TURNS), strict=True)]
    verdict = check_turns(as_photo, [LEFT, RIGHT], rules)
    assert (verdict.passed, verdict.check) == (False, "relief")
    assert verdict.detail.startswith("the face moved as a flat picture does")
    as_head = [replace(pose, landmarks=points) for pose, points in zip(readings, filmed(HEAD, TURNS), strict=True)]
    assert check_turns(as_head, [LEFT, RIGHT], rules).passed
    with pytest.raises(ValueError, match="five landmarks"):
        check_turns(readings, [LEFT, RIGHT], rules)  # poses without their points cannot be checked


# 68 points in 3-D for the shape check (the units of HEAD): a face's relief, falling away from the nose to the
# sides; and the same points on a photo folded down its middle by 20 degrees a side (a V, its fold towards the
# camera as a nose is). A fold sharp enough reads as deep as a head: docs/liveness.md measures how often.
_GRID = np.random.default_rng(0).uniform((-0.9, -0.6), (0.9, 1.2), size=(68, 2))
SHAPE_HEAD = np.column_stack([_GRID, 0.25 - _GRID[:, 0] ** 2 - 0.15 * (_GRID[:, 1] - 0.4) ** 2])
SHAPE_FOLD = np.column_stack([_GRID, -np.abs(_GRID[:, 0]) * math.tan(math.radians(20))])


def test_the_shape_check_reads_dlibs_68_points_and_is_off_unless_set():
    """The poses read as a head's by their five points; their 68 move as a flat or folded picture's: refused once
    the check is on, as a head's: passed. Off (as shipped), the 68 points are not needed."""
    readings = [replace(pose, landmarks=points) for pose, points in zip(burst(*TURNS), filmed(HEAD, TURNS),
                                                                          strict=True)]
    rules = replace(RULES, min_relief=TurnRules().min_relief, min_shape=MEASURED_MIN_SHAPE)
    assert TurnRules().min_shape == 0 and check_turns(readings, [LEFT, RIGHT], replace(rules, min_shape=0)).passed
    with pytest.raises(ValueError, match="68 points"):
        check_turns(readings, [LEFT, RIGHT], rules)

    def shaped(points: np.ndarray) -> list[HeadPose]:
        return [replace(pose, shape=frame) for pose, frame in zip(readings, filmed(points, TURNS), strict=True)]

    for picture in (SHAPE_HEAD * (1, 1, 0), SHAPE_FOLD):
        verdict = check_turns(shaped(picture), [LEFT, RIGHT], rules)
        assert (verdict.passed, verdict.check) == (False, "shape")
        assert verdict.detail.startswith("the face's shape moved as a folded or curved picture's does")
    assert check_turns(shaped(SHAPE_HEAD), [LEFT, RIGHT], rules).passed
    # Only the inner points count: the jaw line's 17 slide along a turning head's outline.
    jaw_only = [replace(pose, shape=(*head.shape[:17], *flat.shape[17:]))
                for pose, head, flat in zip(readings, shaped(SHAPE_HEAD), shaped(SHAPE_FOLD), strict=True)]
    assert shape_relief(jaw_only) == pytest.approx(shape_relief(shaped(SHAPE_FOLD)))
