"""The embedding networks, and the one input format they all take.

A model card names its network's architecture and arguments (`architecture`, `network`); `build` rebuilds it.
Every network maps (N, 3, S, S) float32 faces in [-1, 1] to (N, D) embeddings: `raw` before, and `forward`
after L2 normalisation. Test-time views are averaged on `raw`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.networks.dlib_resnet import DlibResNet
from model.networks.mobilefacenet import MobileFaceNet, NetworkConfig

ARCHITECTURES = ("MobileFaceNet", "DlibResNet")


def build(architecture: str, arguments: dict) -> nn.Module:
    if architecture == "MobileFaceNet":
        return MobileFaceNet(NetworkConfig(**arguments))
    if architecture == "DlibResNet":
        return DlibResNet()
    raise ValueError(f"unknown architecture {architecture!r}; this code builds {', '.join(ARCHITECTURES)}")


def crops_to_tensor(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 crops -> (N, 3, S, S) float32 in [-1, 1]: the networks' only input format.

    A uint8 tensor stays on its device (training keeps its crops on the GPU).
    """
    if crops.ndim == 3:
        crops = crops[None]
    if isinstance(crops, np.ndarray):
        crops = torch.from_numpy(np.require(crops, np.uint8, ["C", "W"]))
    elif crops.dtype != torch.uint8:
        raise TypeError(f"crops must be uint8, got {crops.dtype}")
    return crops.permute(0, 3, 1, 2).float().sub_(127.5).div_(127.5)


__all__ = ["ARCHITECTURES", "DlibResNet", "MobileFaceNet", "NetworkConfig", "build", "crops_to_tensor"]
