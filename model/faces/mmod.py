"""dlib's CNN face detector (MMOD, `mmod_human_face_detector.dat`, CC0), in PyTorch: the same detections, with
the same scores, about 20 times faster on the CPU than the dlib build the service installs (which has no BLAS:
0.6-0.7 s against 25-45 ms for a 100,000-pixel photo on 2 AMD EPYC cores, about 60 ms on one).

What dlib's `cnn_face_detection_model_v1(photo, 0)` does, step by step, and so what this module does:
- **A tiled pyramid.** The photo, as (RGB - the file's mean colour) / 256, is laid out with its copies shrunk
  by 5/6 again and again (bilinear, corners aligned, each from the one before, down to 5 rows) in one image:
  a first column top-down, the rest bottom-up against the right edge, 10 pixels apart and 11 from the edges,
  which are 0 (`_tiling`, dlib's compute_tiled_image_pyramid_details).
- **The network**, on the tiled image: three unpadded 5x5 convolutions at stride 2 (16, 32, 32 filters),
  three padded 5x5 ones (45), each with its batch norm (stored with its running statistics: folded here into
  the convolution) and a ReLU, then a padded 9x9 convolution to one channel: a score per position.
- **Detections.** Every position scoring over 0 is an 80x80 window centred at 8 x position + 14 in the tiled
  image, mapped back to the photo through the pyramid level nearest to its centre (each level up: x 6/5 +
  0.3), rounded to whole pixels; highest score first, a window is dropped when it overlaps one kept by an
  intersection over union above the file's 0.338.

`tests/model/faces/test_mmod.py` holds it to dlib's own detections, box for box and score for score.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.networks.dlib_format import DatStream

# The layers that hold numbers, each after its name as dlib serialises it (a length byte, then the name).
_LAYER = re.compile(rb"\x01(\x05con_4|\x07bn_con2|\x17input_rgb_image_pyramid)")
_CONVS = ((3, 16, 5, 2), (16, 32, 5, 2), (32, 32, 5, 2), (32, 45, 5, 1), (45, 45, 5, 1), (45, 45, 5, 1),
          (45, 1, 9, 1))  # (input channels, filters, size, stride); stride-2 layers are unpadded
SHRINK = 5 / 6  # each pyramid level's size over the one before (dlib's pyramid_down<6>)
MIN_LEVEL_ROWS = 5
PADDING, OUTER_PADDING = 10, 11  # between the tiles, and around them
STRIDE, OFFSET = 8, 14  # a score at (c, r) is the window centred at (8c + 14, 8r + 14) of the tiled image

# A detection in the photo: left, top, right, bottom (whole pixels, inclusive), score.
Box = tuple[float, float, float, float, float]

# A process forked from one whose torch threads have run hangs in its first parallel operation (GNU OpenMP's
# pool does not survive a fork): the research tools detect faces in pools of forked workers, each one process,
# so a forked child computes on one thread.
os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))


@dataclass(frozen=True)
class _Options:
    """What the file says besides the weights: the window's size, the overlap that suppresses a detection, and
    the mean colour subtracted from the input."""

    window: tuple[int, int]
    nms_iou: float
    nms_covered: float
    mean: tuple[float, float, float]


class _Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, size, stride, 0 if stride > 1 else size // 2)
                                   for cin, cout, size, stride in _CONVS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.relu(conv(x))
        return self.convs[-1](x)


def _read(path: Path) -> tuple[_Network, _Options]:
    """The network and its options from dlib's file. Raises ValueError when the file does not hold this network."""
    blob = path.read_bytes()
    stream = DatStream(blob, 0)
    stream.integer()  # the loss layer's version
    if stream.string() != "loss_mmod_" or stream.integer() != 1:
        raise ValueError(f"{path}: not an MMOD detector of options version 1 (one detector window)")
    window = (stream.integer(), stream.integer())
    _false_alarm, _missed, _truth_iou, nms_iou, nms_covered = (stream.real() for _ in range(5))
    mean, convs, norms = None, [], []
    position = stream.position
    while match := _LAYER.search(blob, position):
        stream = DatStream(blob, match.start())
        name = stream.string()
        if name == "con_4":
            params = stream.tensor().ravel()
            convs.append((params, tuple(stream.integer() for _ in range(7))))
        elif name == "bn_con2":
            params = stream.tensor().ravel()
            for _ in range(2 * 5):  # gamma's and beta's places in params: a version and four sizes each
                stream.integer()
            _means, _invstds, running_means, running_variances = (stream.tensor().ravel() for _ in range(4))
            for _ in range(2):  # the updates seen, the running statistics' window
                stream.integer()
            for _ in range(4):  # learning rate and weight decay multipliers
                stream.real()
            norms.append((params, running_means, running_variances, stream.real()))
        else:
            mean = tuple(stream.real() for _ in range(3))
        position = stream.position
    if mean is None or len(convs) != len(_CONVS) or len(norms) != len(_CONVS) - 1:
        raise ValueError(f"{path}: {len(convs)} convolutions and {len(norms)} batch norms are not dlib's MMOD "
                         "face detector")
    network = _Network()
    with torch.no_grad():
        for k, (conv, (params, shape)) in enumerate(zip(network.convs, convs, strict=True)):
            filters, rows, cols, stride, _, padding, _ = shape
            if (filters, rows, cols, stride, padding) != (conv.out_channels, *conv.kernel_size, conv.stride[0],
                                                          conv.padding[0]):
                raise ValueError(f"{path}: convolution {k + 1} has the shape {shape}")
            count = conv.weight.numel()
            weight, bias = torch.from_numpy(params[:count].reshape(conv.weight.shape)), torch.from_numpy(params[count:])
            if k < len(norms):  # fold the batch norm: y = gamma (x - mean) / sqrt(var + eps) + beta
                norm, means, variances, eps = norms[k]
                scale = torch.from_numpy(norm[:filters] / np.sqrt(variances + eps))
                shift = torch.from_numpy(norm[filters:]) - scale * torch.from_numpy(means)
                weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale + shift
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
    return network.eval(), _Options(window, nms_iou, nms_covered, mean)


Rect = tuple[int, int, int, int]  # left, top, right, bottom, inclusive


def _tiling(rows: int, cols: int) -> tuple[int, int, list[Rect]]:
    """(height, width, each level's place) of the tiled pyramid of a rows x cols photo, as dlib lays it out."""
    sizes = [(rows, cols)]
    while True:
        rows, cols = math.floor(SHRINK * rows), math.floor(SHRINK * cols)
        if rows * cols == 0 or rows < MIN_LEVEL_ROWS:
            break
        sizes.append((rows, cols))
    total = sum(h + PADDING for h, _ in sizes) - 2 * PADDING
    first_rows, first_cols = sizes[0]
    height, previous_cols = 0, 0
    for h, w in sizes:  # down the first column until the next level fits beside the one before
        if w <= first_cols - previous_cols - PADDING and (height - first_rows) * 2 >= total - first_rows:
            break
        height += h + PADDING
        previous_cols = w
    height -= PADDING
    places: list[Rect] = []
    y = OUTER_PADDING
    while y < height + OUTER_PADDING and len(places) < len(sizes):
        h, w = sizes[len(places)]
        places.append((OUTER_PADDING, y, OUTER_PADDING + w - 1, y + h - 1))
        y += h + PADDING
    y -= PADDING
    right = OUTER_PADDING + first_cols - 1
    while len(places) < len(sizes):  # then up the right-hand side, until a level would overlap the photo
        h, w = sizes[len(places)]
        place = (right - w + 1, y - h, right, y - 1)
        if _area(_intersection(place, places[0])):
            break
        places.append(place)
        y -= h + PADDING
    return height + 2 * OUTER_PADDING, first_cols + 2 * OUTER_PADDING, places


def _area(box: Rect) -> int:
    return max(0, box[2] - box[0] + 1) * max(0, box[3] - box[1] + 1)


def _intersection(a: Rect, b: Rect) -> Rect:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


class MmodDetector:
    """image (H, W, 3) uint8 RGB -> detections (left, top, right, bottom, score), best first: dlib's
    `cnn_face_detection_model_v1(image, 0)`. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.network, self.options = _read(path)
        self._mean = torch.tensor(self.options.mean, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: np.ndarray) -> list[Box]:
        rows, cols = image.shape[:2]
        height, width, places = _tiling(rows, cols)
        if not places:
            return []
        with torch.inference_mode():
            tiled = torch.zeros(1, 3, height, width)
            pixels = torch.from_numpy(np.require(image, np.uint8, ["C", "W"])).permute(2, 0, 1).float()
            level = ((pixels - self._mean) / 256)[None]
            for k, (left, top, right, bottom) in enumerate(places):
                if k:
                    level = F.interpolate(level, size=(bottom - top + 1, right - left + 1), mode="bilinear",
                                          align_corners=True)
                tiled[:, :, top:bottom + 1, left:right + 1] = level
            scores = self.network(tiled)[0, 0].numpy()
        found_rows, found_cols = np.nonzero(scores > 0)
        found = scores[found_rows, found_cols]
        kept: list[tuple[Rect, float]] = []
        for k in np.argsort(-found, kind="stable"):
            box = self._in_photo(STRIDE * found_cols[k] + OFFSET, STRIDE * found_rows[k] + OFFSET, places)
            if not any(self._overlaps(box, other) for other, _ in kept):
                kept.append((box, float(found[k])))
        return [(*map(float, box), score) for box, score in kept]

    def _in_photo(self, x: float, y: float, places: list[Rect]) -> Rect:
        """The window centred at (x, y) of the tiled image, in the photo's pixels."""
        width, height = self.options.window
        left, top, right, bottom = x - (width - 1) / 2, y - (height - 1) / 2, x + (width - 1) / 2, y + (height - 1) / 2
        level = _nearest(places, (left + right) / 2, (top + bottom) / 2)
        corners = []
        for cx, cy in ((left, top), (right, bottom)):
            cx, cy = cx - places[level][0], cy - places[level][1]
            for _ in range(level):
                cx, cy = cx / SHRINK + 0.3, cy / SHRINK + 0.3
            corners += [math.floor(cx + 0.5), math.floor(cy + 0.5)]
        return tuple(corners)

    def _overlaps(self, a: Rect, b: Rect) -> bool:
        """dlib's test_box_overlap: the intersection over union, or the share of either box covered."""
        inner = _area(_intersection(a, b))
        if inner == 0:
            return False
        outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
        return (inner / outer > self.options.nms_iou or inner / _area(a) > self.options.nms_covered
                or inner / _area(b) > self.options.nms_covered)


def _nearest(places: list[Rect], x: float, y: float) -> int:
    """The level whose place holds (x, y), or is nearest to it."""
    best, nearest = math.inf, 0
    for k, (left, top, right, bottom) in enumerate(places):
        if left <= x <= right and top <= y <= bottom:
            return k
        distance = math.hypot(min(max(x, left), right) - x, min(max(y, top), bottom) - y)
        if distance < best:
            best, nearest = distance, k
    return nearest
