"""The head-turn check on hand-built trajectories (model.faces.liveness), and the head geometry it reads."""

from __future__ import annotations

import math

import pytest

from model.faces.config import TurnRules
from model.faces.liveness import HeadPose, Prompt, check_turns, fewest_frames

RULES = TurnRules(turn=12.0, centre=8.0, max_step=40.0, min_spread=0.8, baseline_frames=2)
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
