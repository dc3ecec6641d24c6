"""Siamese losses as composable objects: a distance, a miner and a loss are passed in, not flagged.

Conventions (as in the project brief): Y = 0 for a pair of the same person, Y = 1 for different people.
    contrastive: (1 - Y) * D^2 / 2 + Y * max(0, m - D)^2 / 2
    triplet:     max(d(a, p) - d(a, n) + margin, 0)
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


class Distance(Protocol):
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, D), (M, D) -> (N, M) distances."""
        ...


class EuclideanDistance:
    """L2 distance; on unit vectors it lies in [0, 2] and equals sqrt(2 - 2 cos)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        squared = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.T).clamp_min(0)
        # The epsilon keeps the gradient finite where a distance is exactly zero (the diagonal).
        return (squared + 1e-12).sqrt()


def contrastive_loss(distance: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-pair contrastive loss; `y` is 0 for same-person pairs, 1 for different people."""
    y = y.to(distance.dtype)
    return (1 - y) * distance.pow(2) / 2 + y * F.relu(margin - distance).pow(2) / 2


def triplet_loss(d_ap: torch.Tensor, d_an: torch.Tensor, margin: float) -> torch.Tensor:
    return F.relu(d_ap - d_an + margin)


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class ContrastiveLoss(nn.Module):
    """Contrastive loss over every pair in a P x K batch.

    Same-person pairs and different-person pairs are averaged separately, then added, so that the many
    easy negatives of a batch do not drown its few positives. Negatives beyond the margin contribute zero
    and are left out of their mean (online mining of the active pairs).
    """

    def __init__(self, margin: float = 1.0, distance: Distance | None = None) -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance or EuclideanDistance()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d = self.distance(embeddings, embeddings)
        positive, negative = _masks(labels)
        pos = contrastive_loss(d[positive], torch.zeros_like(d[positive]), self.margin)
        neg = contrastive_loss(d[negative], torch.ones_like(d[negative]), self.margin)
        active = neg[neg > 0]
        return _mean(pos) + _mean(active)


class BatchHardMiner:
    """For each anchor: its farthest positive and its closest negative (Hermans et al., 2017)."""

    def __call__(self, d: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive, negative = _masks(labels)
        has_both = positive.any(1) & negative.any(1)
        d_ap = d.masked_fill(~positive, float("-inf")).amax(1)
        d_an = d.masked_fill(~negative, float("inf")).amin(1)
        return d_ap[has_both], d_an[has_both]


class SemiHardMiner:
    """For each (anchor, positive): the closest negative still farther than the positive
    (FaceNet, Schroff et al., 2015); the hardest negative when none is farther."""

    def __init__(self, margin: float) -> None:
        self.margin = margin

    def __call__(self, d: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive, negative = _masks(labels)
        anchors, positives = positive.nonzero(as_tuple=True)
        d_ap = d[anchors, positives]
        d_neg = d[anchors].masked_fill(~negative[anchors], float("inf"))
        farther = d_neg.masked_fill(d_neg <= d_ap[:, None], float("inf")).amin(1)
        hardest = d_neg.amin(1)
        d_an = torch.where(torch.isfinite(farther), farther, hardest)
        keep = torch.isfinite(d_an)
        return d_ap[keep], d_an[keep]


class TripletLoss(nn.Module):
    def __init__(self, margin: float = 0.3, miner: BatchHardMiner | SemiHardMiner | None = None,
                 distance: Distance | None = None) -> None:
        super().__init__()
        self.margin = margin
        self.miner = miner or BatchHardMiner()
        self.distance = distance or EuclideanDistance()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d_ap, d_an = self.miner(self.distance(embeddings, embeddings), labels)
        return _mean(triplet_loss(d_ap, d_an, self.margin))


class DistillationLoss(nn.Module):
    """Pull the student's unit vectors onto the teacher's, and keep the teacher's geometry.

    The first term is 1 - cos(student_i, teacher_i). The second (relational, Park et al., 2019) matches the
    batch's pairwise cosine similarities, which is what verification actually uses.
    """

    def __init__(self, relational_weight: float = 1.0) -> None:
        super().__init__()
        self.relational_weight = relational_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        teacher = F.normalize(teacher, dim=1)
        pointwise = (1 - (student * teacher).sum(1)).mean()
        relational = F.mse_loss(student @ student.T, teacher @ teacher.T)
        return pointwise + self.relational_weight * relational


def _mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean() if values.numel() else values.sum()
