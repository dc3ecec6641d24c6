"""The PyTorch port of dlib's face ResNet gives dlib's own descriptors, on dlib's own chip."""

from pathlib import Path

import numpy as np
import pytest
import torch

from model.card.schema import ModelError, read_card
from model.faces.config import PipelineConfig
from model.faces.decode import decode_image
from model.faces.embedder import DEFAULT_MODEL, Embedder, int8_is_exact
from model.faces.pipeline import FacePipeline, dlib_model_path
from model.faces.reference import DLIB_RESNET, DlibEmbedder
from model.networks.dlib_resnet import _padded_add, read_dat
from model.release.import_dlib import import_dlib


def test_padded_add_pads_the_smaller_tensor_at_the_end_of_channels_and_bottom_right():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 2, 2), 10.0)
    total = _padded_add(a, b)
    assert total.shape == (1, 2, 3, 3)
    expected = torch.ones(1, 2, 3, 3)
    expected[0, 0, :2, :2] += 10  # b sits in the first channel, top-left
    assert torch.equal(total, expected)
    assert torch.equal(_padded_add(b, a), expected)


def test_the_port_reads_dlibs_file_and_refuses_another():
    network = read_dat(Path(dlib_model_path(DLIB_RESNET)))
    assert sum(p.numel() for p in network.parameters()) == 5_607_488
    assert network.mean.flatten().tolist() == pytest.approx([122.782, 117.001, 104.298], abs=1e-3)
    with pytest.raises(ValueError):
        read_dat(Path(dlib_model_path("shape_predictor_5_face_landmarks.dat")))


def test_the_shipped_default_is_exactly_dlibs_network_and_its_card_says_so():
    imported = read_dat(Path(dlib_model_path(DLIB_RESNET))).state_dict()
    shipped = torch.load(DEFAULT_MODEL, weights_only=True)
    assert imported.keys() == shipped.keys()
    assert all(torch.equal(imported[k], shipped[k]) for k in imported)
    card = Embedder.load(DEFAULT_MODEL, "cpu").card.data
    assert card["architecture"] == "DlibResNet" and card["preprocess"] == "dlib-chip-v1"
    assert "CC0" in card["lineage"]["licence"] and "3 million" in card["lineage"]["trained_by"]


def test_our_descriptors_match_dlibs_compute_face_descriptor_on_its_chip(testfaces, tmp_path):
    """model.release.import_dlib's network, on dlib's chip (150 px, padding 0.25, 5-point alignment), gives dlib's
    own descriptors: cosine >= 0.99999 on every test face."""
    card = import_dlib(tmp_path / "dlib.pt")
    assert card["preprocess"] == "dlib-chip-v1" and "3 million" in card["lineage"]["trained_by"]
    embedder = Embedder.load(tmp_path / "dlib.pt", "cpu", augment="none")
    pipeline = FacePipeline(PipelineConfig(crop_size=150, chip="dlib-chip-v1"))
    reference = DlibEmbedder()
    photos = sorted(testfaces.rglob("*.jpg"))
    assert len(photos) == 36
    for path in photos:
        rgb = decode_image(path.read_bytes(), max_pixels=10**7)
        face = pipeline.detect(rgb)[0]
        ours = embedder.embed(pipeline.align(rgb, face)[None])[0]
        theirs = reference.embed(rgb, face)
        cosine = float(ours @ theirs / np.linalg.norm(theirs))
        assert cosine >= 0.99999, (path.name, cosine)


@pytest.mark.parametrize("precision,closest", [("bf16", 0.9999), ("int8", 0.998)])
def test_the_cpus_faster_precisions_keep_the_fp32_embeddings_close(testfaces, precision, closest):
    """FACEGATE_PRECISION=bf16 and int8 (the card's quantized network in ONNX Runtime): the reference is fp32,
    the path the card's figures were measured on. The int8 network's weights take 7 bits, so that its arithmetic
    is exact on every CPU: with 8-bit weights the test faces fell to 0.978 on an AVX2-only CPU."""
    reference, fast = (Embedder.load(DEFAULT_MODEL, "cpu", precision=p) for p in ("fp32", precision))
    assert (reference.precision, fast.precision) == ("fp32", precision)
    pipeline = FacePipeline(PipelineConfig(crop_size=150, chip="dlib-chip-v1"))
    chips = []
    for path in sorted(testfaces.rglob("*.jpg")):
        rgb = decode_image(path.read_bytes(), max_pixels=10**7)
        chips.append(pipeline.align(rgb, pipeline.detect(rgb)[0]))
    cosine = np.sum(reference.embed(np.stack(chips)) * fast.embed(np.stack(chips)), axis=1)
    assert len(cosine) == 36 and cosine.min() >= closest and cosine.min() < 0.99999  # close, and really another


def test_auto_runs_int8_only_where_the_cpu_runs_it_exactly():
    """The shipped card calibrates an int8 network with 7-bit weights, which every CPU runs exactly, so auto takes
    it on every CPU. 8-bit weights (an older card's) only where the CPU has VNNI or AMX (x86), or is not x86."""
    assert read_card(DEFAULT_MODEL)["int8"]["weight_bits"] == 7
    assert Embedder.load(DEFAULT_MODEL, "cpu").precision == "int8"
    assert int8_is_exact("x86_64", frozenset({"avx2"}), 7) and int8_is_exact("x86_64", frozenset(), 7)
    assert int8_is_exact("x86_64", frozenset({"avx2", "avx512_vnni"}), 8)
    assert int8_is_exact("x86_64", frozenset({"avx2", "avx_vnni"}), 8)
    assert int8_is_exact("AMD64", frozenset({"amx_int8"}), 8)
    assert not int8_is_exact("x86_64", frozenset({"avx2", "fma", "avx512f"}), 8)  # AVX-512 without VNNI saturates
    assert not int8_is_exact("x86_64", frozenset(), 8)  # flags unknown: not taken
    assert int8_is_exact("aarch64", frozenset(), 8)


def test_a_precision_the_device_cannot_run_is_refused():
    with pytest.raises(ModelError):
        Embedder.load(DEFAULT_MODEL, "cpu", precision="fp64")
    if torch.cuda.is_available():
        for precision in ("bf16", "int8"):
            with pytest.raises(ModelError):
                Embedder.load(DEFAULT_MODEL, "cuda", precision=precision)
