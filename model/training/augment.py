"""Batch augmentation on the network's input tensors: cheap next to the network, and no per-image Python.

Flips, crop and scale jitter (a random similarity warp), colour, grayscale, blur and down-up sampling
(a low-resolution camera). The aligned crop stays the centre of the distribution, so the augmented faces
still look like what the pipeline produces at serving time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    shift: float = 0.05  # fraction of the crop
    scale: float = 0.08  # +- relative
    rotate: float = 8.0  # +- degrees
    brightness: float = 0.25  # +- in [-1, 1] units
    contrast: float = 0.3  # +- relative
    saturation: float = 0.4  # +- relative
    grayscale: float = 0.1
    blur: float = 0.15
    downup: float = 0.2


class FaceAugment:
    def __init__(self, config: AugmentConfig, generator: torch.Generator) -> None:
        self.config = config
        self.generator = generator

    def _uniform(self, n: int, spread: float, device: torch.device) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * 2 - 1).mul_(spread).to(device)

    def _chance(self, n: int, p: float, device: torch.device) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) < p).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> augmented copy."""
        n, device, c = x.shape[0], x.device, self.config
        x = self._warp(x)
        gray = x.mean(1, keepdim=True)
        saturation = (1 + self._uniform(n, c.saturation, device)).view(n, 1, 1, 1)
        saturation = torch.where(self._chance(n, c.grayscale, device).view(n, 1, 1, 1), 0.0, saturation)
        x = gray + (x - gray) * saturation
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = (1 + self._uniform(n, c.contrast, device)).view(n, 1, 1, 1)
        x = (x - mean) * contrast + mean + self._uniform(n, c.brightness, device).view(n, 1, 1, 1)
        x = self._blur(x, self._chance(n, c.blur, device))
        x = self._down_up(x, self._chance(n, c.downup, device))
        return x.clamp_(-1, 1)

    def _warp(self, x: torch.Tensor) -> torch.Tensor:
        n, device, c = x.shape[0], x.device, self.config
        angle = self._uniform(n, math.radians(c.rotate), device)
        scale = 1 + self._uniform(n, c.scale, device)
        flip = torch.where(self._chance(n, c.flip, device), -1.0, 1.0)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([
            torch.stack([cos * flip, -sin, self._uniform(n, 2 * c.shift, device)], 1),
            torch.stack([sin * flip, cos, self._uniform(n, 2 * c.shift, device)], 1),
        ], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _blur(self, x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        if not chosen.any():
            return x
        sigma = 0.5 + float(torch.rand(1, generator=self.generator)) * 1.0
        taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-(taps**2) / (2 * sigma**2))
        kernel = (kernel / kernel.sum()).view(1, 1, 1, 5).repeat(3, 1, 1, 1)
        picked = x[chosen]
        picked = F.conv2d(F.pad(picked, (2, 2, 0, 0), mode="replicate"), kernel, groups=3)
        picked = F.conv2d(F.pad(picked, (0, 0, 2, 2), mode="replicate"), kernel.transpose(2, 3), groups=3)
        x = x.clone()
        x[chosen] = picked
        return x

    def _down_up(self, x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        if not chosen.any():
            return x
        size = x.shape[-1]
        low = int(size * (0.3 + 0.35 * float(torch.rand(1, generator=self.generator))))
        picked = F.interpolate(x[chosen], size=(low, low), mode="bilinear", antialias=True, align_corners=False)
        x = x.clone()
        x[chosen] = F.interpolate(picked, size=(size, size), mode="bilinear", align_corners=False)
        return x
