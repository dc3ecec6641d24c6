"""The last stage of the faces pipeline: aligned crops -> L2-normalised embeddings.

A model is its weights and its card (model.card.schema): the card rebuilds the network, says which
preprocessing it expects and carries the calibrated thresholds. `model_id` is a content hash of the weights.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.card.keys import INT8
from model.card.schema import ModelCard, ModelError, card_path, int8_path, weights_id
from model.card.scores import Cohort
from model.faces.config import CHIPS, DEFAULT_MODEL, PRECISIONS, Augment, Precision, Views
from model.networks import build, crops_to_tensor

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "Embedder"]

# x86 CPU flags under which ONNX Runtime's int8 (u8s8) convolutions add their products without saturating: VNNI
# or AMX. With AVX2 alone they use VPMADDUBSW, which sums pairs of u8 x s8 products into 16 bits and saturates
# with 8-bit weights: on a 2-core AMD EPYC (Zen 3: AVX2, no VNNI) an int8 network with 8-bit weights gave the test
# faces embeddings at cosine 0.978 of fp32's, where VNNI keeps them above 0.999. With 7-bit weights (ONNX
# Runtime's reduce_range, what model.release.quantize makes) a pair's sum stays within 16 bits on every CPU.
EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
X86 = frozenset({"x86_64", "amd64", "i386", "i686"})
EXACT_WEIGHT_BITS = 7


def int8_is_exact(machine: str, flags: frozenset[str], weight_bits: int) -> bool:
    """Whether a CPU of this architecture (platform.machine()) and these /proc/cpuinfo flags runs an int8 network
    whose weights take `weight_bits` bits as it was calibrated: 7-bit weights everywhere; 8-bit ones on x86 only
    with VNNI or AMX, and elsewhere (ARM's int8 dot products widen to 32 bits), unmeasured."""
    return weight_bits <= EXACT_WEIGHT_BITS or machine.lower() not in X86 or bool(flags & EXACT_INT8_FLAGS)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's flags as /proc/cpuinfo lists them; none where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return frozenset(word for line in text.splitlines() if line.startswith(("flags", "Features"))
                     for word in line.split(":", 1)[1].split())


def this_cpu_runs_int8_exactly(weight_bits: int) -> bool:
    """int8_is_exact for this machine; an x86 CPU whose flags cannot be read has neither VNNI nor AMX."""
    return int8_is_exact(platform.machine(), cpu_flags(), weight_bits)


class Int8Network:
    """The card's int8 copy of the network (model.release.quantize), run by ONNX Runtime on the CPU with as many
    threads as torch has: the network's `raw`, from the same inputs, for `Embedder.embed`."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime  # only the int8 precision needs it

        self.sha256 = hashlib.sha256(model).hexdigest()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    @classmethod
    def of(cls, card: ModelCard, weights: Path) -> Int8Network:
        """The int8 network the card names beside `weights`; a missing one, or a file that is not the one the
        card describes, is a ModelError."""
        info = card.data.get(INT8)
        if not info:
            raise ModelError(f"{weights.name} ships no int8 network: python -m model.release.quantize makes one")
        path = int8_path(weights)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read the int8 network {path}: {exc}") from exc
        if hashlib.sha256(blob).hexdigest() != info["sha256"]:
            raise ModelError(f"{path} does not match its card's sha256: it is not the network the card describes")
        try:
            return cls(blob)
        except Exception as exc:  # ONNX Runtime's own exception types; any failure to load is the model's
            raise ModelError(f"cannot load the int8 network {path}: {exc}") from exc

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.session.run(None, {"x": np.ascontiguousarray(x.numpy())})[0]
        except Exception as exc:  # ONNX Runtime's own types, none a RuntimeError: a refusal as torch's would be
            raise RuntimeError(f"the int8 network refused its input: {exc}") from exc
        return torch.from_numpy(out)


class Embedder:
    """A loaded, frozen embedder. `embed` is safe to call from several threads at once.

    `augment` is the test-time augmentation it serves with (by default the card's): the pipeline makes the
    views of each face (`FacePipeline.align(..., embedder.views)`), the embedder adds their mirrors when
    `views.flip`, and averages them.
    """

    def __init__(self, network: nn.Module, card: ModelCard, model_id: str, device: torch.device,
                 augment: Augment | None = None, cohort: Cohort | None = None, precision: Precision = "auto",
                 int8: Int8Network | None = None) -> None:
        """`cohort`: the AS-norm cohort shipped with the model for this augmentation (ModelCard.cohort), if any.
        `precision`: auto is fp16 on a GPU and fp32 on the CPU (`load` makes it int8 there when the card has a
        calibrated int8 network for the augmentation asked, and the CPU runs it exactly: int8_is_exact); fp32 is
        the reference, the card's own figures; bf16 runs the CPU's convolutions in bfloat16 (oneDNN, where the
        CPU has AVX-512 BF16 or AMX); int8 runs `int8`, the card's quantized copy of the network (`load` reads it),
        in ONNX Runtime, and decides by the card's int8 thresholds."""
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
        if precision in ("bf16", "int8") and device.type != "cpu":
            raise ModelError(f"{precision} is a CPU precision; on a GPU the network runs in fp16")
        if (precision == "int8") != (int8 is not None):
            raise ModelError("the int8 precision runs an int8 network, and only it does")
        self.card, self.model_id, self.device, self.cohort = card, model_id, device, cohort
        self.augment: Augment = augment or card.augment
        self.views = Views.of(self.augment)
        self.half = device.type == "cuda"
        self.precision: Precision = "fp16" if self.half else (precision if precision in ("bf16", "int8") else "fp32")
        if self.precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            log.warning("bf16 asked, but this CPU has no native bfloat16 (AVX-512 BF16 or AMX): it will be emulated, "
                        "and slower than fp32")
        network = network.to(device).eval().to(memory_format=torch.channels_last)
        self.network = network.half() if self.half else network
        self.int8 = int8

    @property
    def arithmetic(self) -> str:
        """What computes the vectors besides the weights: the precision, and for int8 which quantized network.
        Vectors of one model_id in two arithmetics differ a little (docs/benchmarks.md says how much)."""
        return f"int8:{self.int8.sha256[:16]}" if self.int8 is not None else self.precision

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def dim(self) -> int:
        return self.card.embedding_dim

    @classmethod
    def load(cls, weights: Path, device: str = "auto", augment: Augment | None = None,
             precision: Precision = "auto") -> Embedder:
        card = ModelCard.read(card_path(weights))
        if card.preprocess not in CHIPS:
            raise ModelError(f"{weights} expects preprocessing {card.preprocess!r}; this code does "
                             f"{', '.join(CHIPS)}")
        try:
            blob = weights.read_bytes()
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            network = build(card.architecture, card.network)
            network.load_state_dict(state)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"cannot load weights {weights}: {exc}") from exc
        chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              "cpu" if device == "auto" else device)
        served = augment or card.augment
        cohort = card.cohort(weights, served)
        exact = this_cpu_runs_int8_exactly(card.int8_weight_bits)
        if precision == "auto" and chosen.type == "cpu" and card.int8_calibrated and served == card.augment:
            # the CPU's default where the card calibrated an int8 network, and the CPU runs it exactly
            precision = "int8" if exact else "fp32"
            if not exact:
                log.warning("the card's int8 network has 8-bit weights and this CPU has no VNNI or AMX: its int8 "
                            "arithmetic saturates, so the network runs in fp32 (slower; FACEGATE_PRECISION=int8 "
                            "forces int8, off its calibration)")
        elif precision == "int8" and not exact:
            log.warning("int8 asked for 8-bit weights on a CPU without VNNI or AMX: its int8 arithmetic saturates, "
                        "and the embeddings drift from those the card's int8 thresholds were calibrated on")
        int8 = Int8Network.of(card, weights) if precision == "int8" and chosen.type == "cpu" else None
        if int8 is not None:
            if served != card.augment:
                raise ModelError(f"the int8 network is calibrated with {card.augment} only, not {augment}")
            card = card.for_int8()
        log.info("loaded %s (%s, %s) on %s%s; %s", weights.name, card.architecture, weights_id(blob), chosen,
                 f", {int8_path(weights).name}" if int8 else "",
                 f"AS-norm cohort of {len(cohort.vectors)}, K={cohort.k}" if cohort else "no cohort: plain scores")
        return cls(network, card, weights_id(blob), chosen, augment, cohort, precision, int8)

    @torch.inference_mode()
    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) chips, or (N, V, S, S, 3) views of N faces, uint8 -> (N, D) float32 unit vectors.

        Each face's views, and their mirrors when `views.flip`, are averaged before normalising.
        """
        if chips.ndim == 4:
            chips = chips[:, None]
        faces, views = chips.shape[:2]
        x = crops_to_tensor(chips.reshape(faces * views, *chips.shape[2:])).to(self.device)
        if self.views.flip:
            x = torch.cat([x, x.flip(3)])
        if self.int8 is not None:
            raw = self.int8.raw(x)
        elif self.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                raw = self.network.raw(x.contiguous(memory_format=torch.channels_last)).float()
        else:
            x = x.contiguous(memory_format=torch.channels_last)
            raw = self.network.raw(x.half() if self.half else x).float()
        raw = raw.view(-1, faces, views, raw.shape[-1]).mean(dim=(0, 2))
        return F.normalize(raw, dim=1).cpu().numpy()

    def embed_many(self, chips: np.ndarray, batch_size: int = 256) -> np.ndarray:
        parts = [self.embed(chips[i:i + batch_size]) for i in range(0, len(chips), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
