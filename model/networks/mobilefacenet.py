"""The embedder: a MobileFaceNet (Chen et al., 2018) mapping an aligned face to an L2-normalised vector.

MobileFaceNet is built for exactly this job on small machines: inverted-residual blocks, and a global
depthwise convolution instead of global average pooling, which keeps where each feature is on the face.
About 1M parameters (4 MB in fp32) and 0.22 GFLOPs at 112x112. `width` scales every layer for
smaller or larger variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    embedding_dim: int = 128
    input_size: int = 112
    width: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


def _channels(base: int, width: float) -> int:
    return max(8, int(round(base * width / 8)) * 8)


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: bool = True, padding: int | None = None) -> None:
        padding = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if activation:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: expand (1x1), filter (3x3 depthwise), project (1x1, linear)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            ConvBN(cin, hidden),
            ConvBN(hidden, hidden, 3, stride, groups=hidden),
            ConvBN(hidden, cout, activation=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


# (expansion, output channels, repeats, stride of the first block): the paper's table 1.
_STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class MobileFaceNet(nn.Module):
    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetworkConfig()
        if config.input_size % 16:
            raise ValueError("input_size must be a multiple of 16")
        c64 = _channels(64, config.width)
        layers: list[nn.Module] = [ConvBN(3, c64, 3, 2), ConvBN(c64, c64, 3, 1, groups=c64)]
        cin = c64
        for expansion, base, repeats, stride in _STAGES:
            cout = _channels(base, config.width)
            for i in range(repeats):
                layers.append(Bottleneck(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        c512 = _channels(512, config.width)
        spatial = config.input_size // 16
        layers += [
            ConvBN(cin, c512),
            ConvBN(c512, c512, spatial, groups=c512, activation=False, padding=0),  # global depthwise
        ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv2d(c512, config.embedding_dim, 1, bias=False),
            nn.BatchNorm2d(config.embedding_dim),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) faces in [-1, 1] -> (N, D) embeddings before normalisation."""
        return self.head(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) faces in [-1, 1] -> (N, D) unit vectors."""
        return F.normalize(self.raw(x), dim=1)

