import math

import pytest
import torch

from model.training.losses import (
    BatchHardMiner,
    ContrastiveLoss,
    DistillationLoss,
    EuclideanDistance,
    SemiHardMiner,
    TripletLoss,
    contrastive_loss,
)


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def chord(degrees: float) -> float:
    """Distance between two unit vectors `degrees` apart."""
    return 2 * math.sin(math.radians(degrees) / 2)


def test_euclidean_distance_of_unit_vectors_at_known_angles():
    x = torch.tensor([unit(0), unit(90), unit(180)])
    d = EuclideanDistance()(x, x)
    expected = torch.tensor([[0, chord(90), 2], [chord(90), 0, chord(90)], [2, chord(90), 0]])
    assert torch.allclose(d, expected, atol=1e-5)


def test_contrastive_loss_matches_the_formula_by_hand():
    # same pair at D=0.5: (1-0) * 0.25 / 2 = 0.125
    # different pair at D=0.5, m=1: 1 * max(0, 0.5)^2 / 2 = 0.125
    # different pair at D=1.5, m=1: 0
    d = torch.tensor([0.5, 0.5, 1.5])
    y = torch.tensor([0, 1, 1])
    assert torch.allclose(contrastive_loss(d, y, margin=1.0), torch.tensor([0.125, 0.125, 0.0]))


def test_contrastive_module_averages_positives_and_active_negatives():
    # labels a, a, b at 0, 60 and 90 degrees; margin 1.
    x = torch.tensor([unit(0), unit(60), unit(90)])
    labels = torch.tensor([0, 0, 1])
    loss = ContrastiveLoss(margin=1.0)(x, labels)
    positive = chord(60) ** 2 / 2  # D = 1 for 60 degrees
    # (0,2) are 90 degrees apart: D = 1.414 > m, inactive. (1,2) are 30 degrees apart: active.
    active_negative = max(0.0, 1 - chord(30)) ** 2 / 2
    assert max(0.0, 1 - chord(90)) == 0.0
    assert loss.item() == pytest.approx(positive + active_negative, abs=1e-5)


def test_triplet_loss_batch_hard_by_hand():
    # anchor 0 (a) at 0 deg, positive 1 (a) at 40 deg, negatives (b) at 50 and 120 deg.
    x = torch.tensor([unit(0), unit(40), unit(50), unit(120)])
    labels = torch.tensor([0, 0, 1, 1])
    d = EuclideanDistance()(x, x)
    d_ap, d_an = BatchHardMiner()(d, labels)
    # anchor 0: hardest positive 40 deg, closest negative 50 deg
    assert d_ap[0].item() == pytest.approx(chord(40), abs=1e-5)
    assert d_an[0].item() == pytest.approx(chord(50), abs=1e-5)
    loss = TripletLoss(margin=0.3)(x, labels)
    expected = [max(chord(40) - chord(50) + 0.3, 0),  # anchor 0
                max(chord(40) - chord(10) + 0.3, 0),  # anchor 1: negative at 50 is 10 deg away
                max(chord(70) - chord(10) + 0.3, 0),  # anchor 2: positive at 120, negative at 40
                max(chord(70) - chord(80) + 0.3, 0)]  # anchor 3: positive at 50, negative at 40
    assert loss.item() == pytest.approx(sum(expected) / 4, abs=1e-5)


def test_semi_hard_miner_prefers_the_closest_negative_beyond_the_positive():
    x = torch.tensor([unit(0), unit(30), unit(20), unit(45), unit(150)])
    labels = torch.tensor([0, 0, 1, 1, 1])
    d = EuclideanDistance()(x, x)
    d_ap, d_an = SemiHardMiner(margin=0.3)(d, labels)
    # (anchor 0, positive 1): d_ap = chord(30); negatives at 20 (closer), 45, 150 -> picks 45
    assert d_ap[0].item() == pytest.approx(chord(30), abs=1e-5)
    assert d_an[0].item() == pytest.approx(chord(45), abs=1e-5)


def test_triplet_loss_is_zero_when_every_negative_is_beyond_the_margin():
    x = torch.tensor([unit(0), unit(5), unit(180), unit(175)])
    labels = torch.tensor([0, 0, 1, 1])
    assert TripletLoss(margin=0.3)(x, labels).item() == 0.0


def test_distillation_loss_is_zero_for_identical_directions_and_positive_otherwise():
    student = torch.tensor([unit(0), unit(90)])
    assert DistillationLoss()(student, 3 * student).item() == pytest.approx(0.0, abs=1e-6)
    teacher = torch.tensor([unit(10), unit(90)])
    expected_pointwise = (1 - math.cos(math.radians(10))) / 2
    sim_s, sim_t = 0.0, math.cos(math.radians(80))
    expected_relational = 2 * (sim_s - sim_t) ** 2 / 4
    assert DistillationLoss()(student, teacher).item() == pytest.approx(
        expected_pointwise + expected_relational, abs=1e-5)
