"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1, CC0), in PyTorch.

The network of dlib's `dnn_face_recognition_ex` and of its Python binding's `compute_face_descriptor`: a
150x150 RGB face chip -> 128 numbers. dlib's author trained it on about 3M faces. Layer by layer:

    conv 7x7/2 (32) -> relu -> max pool 3x3/2
    3 x block(32), then block/2(64) + 3 x block(64), block/2(128) + 2 x block(128),
    block/2(256) + 2 x block(256), block/2(256)
    mean over the remaining pixels -> fc 256 -> 128 (no bias)

A block is conv 3x3 -> relu -> conv 3x3, added to its input, then relu. A downsampling block (/2) runs its
first conv at stride 2 and adds a 2x2/2 average pool of its input. Where dlib's layers differ from the
usual ones:
- stride-2 convolutions and pools are unpadded (dlib pads only stride-1 layers);
- the add of two tensors of different shapes zero-pads the smaller one at the end of the channels and
  at the bottom and right (at 4x4 -> 2x2 the two branches disagree by one pixel): `_padded_add`;
- dlib stores each conv's batch norm already folded into an affine layer (gamma, beta). `read_dat` folds
  those into the conv's weights and bias, which changes nothing but the float rounding;
- the input is (RGB - per-channel mean) / 256, with the means stored in the file; the fc is stored
  transposed.
`read_dat` reads dlib's serialised network in pure Python, checked layer by layer against this shape.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.networks.dlib_format import DatStream

# (input channels, output channels, downsample) of each residual block, input side first.
BLOCKS = ((32, 32, False),) * 3 + ((32, 64, True),) + ((64, 64, False),) * 3 + ((64, 128, True),) \
    + ((128, 128, False),) * 2 + ((128, 256, True),) + ((256, 256, False),) * 2 + ((256, 256, True),)
INPUT_SIZE, EMBEDDING_DIM = 150, 128


def _padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the smaller tensor is zero-padded at the end of the channels and at the bottom/right."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if downsample else 1, 0 if downsample else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(_padded_add(shortcut, y))


class DlibResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # dlib's per-channel input means (RGB, 0-255); set from the .dat, saved with the weights.
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        self.blocks = nn.Sequential(*(Block(*spec) for spec in BLOCKS))
        self.fc = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 150, 150) in [-1, 1] -> (N, 128) descriptors, as dlib's compute_face_descriptor gives them."""
        x = (x * 127.5 + 127.5 - self.mean) / 256.0  # back to RGB 0-255, then dlib's own normalisation
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.raw(x), dim=1)


# --- dlib's serialisation ----------------------------------------------------------------------------------

# The layers that hold numbers, each after its name as dlib serialises it (a length byte, then the name).
_LAYER = re.compile(rb"\x01(\x05con_4|\x07affine_|\x04fc_2|\x15input_rgb_image_sized)")


def _layers(blob: bytes) -> list[tuple[str, object]]:
    layers: list[tuple[str, object]] = []
    position = 0
    while match := _LAYER.search(blob, position):
        stream = DatStream(blob, match.start())
        name = stream.string()
        if name == "con_4":
            params = stream.tensor().ravel()
            shape = tuple(stream.integer() for _ in range(7))  # filters, rows, cols, strides, paddings
            layers.append(("conv", (params, shape)))
        elif name == "affine_":
            layers.append(("affine", stream.tensor().ravel()))
        elif name == "fc_2":
            outputs, inputs = stream.integer(), stream.integer()
            layers.append(("fc", stream.tensor().reshape(inputs, outputs)))
        else:
            layers.append(("input", np.array([stream.real() for _ in range(3)], np.float32)))
        position = stream.position
    return layers


def read_dat(path: Path) -> DlibResNet:
    """dlib's `dlib_face_recognition_resnet_model_v1.dat` as a DlibResNet, affine layers folded into the convs.

    Raises ValueError when the file does not hold exactly this network.
    """
    layers = _layers(path.read_bytes())
    kinds = [kind for kind, _ in layers]
    network = DlibResNet()
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    expected = ["input"] + ["conv", "affine"] * len(convs) + ["fc"]
    if kinds != expected:
        raise ValueError(f"{path}: layers {kinds[:6]}... ({len(kinds)}) are not dlib's face ResNet "
                         f"({len(expected)} layers)")
    with torch.no_grad():
        network.mean.copy_(torch.from_numpy(layers[0][1]).view(1, 3, 1, 1))
        for conv, (_, (params, shape)), (_, affine) in zip(convs, layers[1:-1:2], layers[2:-1:2], strict=True):
            filters, rows, cols, stride, _, padding, _ = shape
            expected_shape = (conv.out_channels, *conv.kernel_size, conv.stride[0], conv.padding[0])
            if (filters, rows, cols, stride, padding) != expected_shape:
                raise ValueError(f"{path}: a conv of shape {shape} where {expected_shape} was expected")
            weight_count = conv.weight.numel()
            if params.size != weight_count + filters or affine.size != 2 * filters:
                raise ValueError(f"{path}: a conv or affine layer of the wrong size")
            gamma, beta = torch.from_numpy(affine[:filters]), torch.from_numpy(affine[filters:])
            weight = torch.from_numpy(params[:weight_count].reshape(conv.weight.shape))
            conv.weight.copy_(weight * gamma.view(-1, 1, 1, 1))
            conv.bias.copy_(torch.from_numpy(params[weight_count:]) * gamma + beta)
        fc = layers[-1][1]
        if fc.shape != (network.fc.in_features, network.fc.out_features):
            raise ValueError(f"{path}: an fc layer of shape {fc.shape}")
        network.fc.weight.copy_(torch.from_numpy(fc.T.copy()))
    return network.eval()
