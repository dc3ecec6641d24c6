"""model.release.quantize: the card's int8 network, made from the weights, named and checked by the card."""

import numpy as np
import pytest

from model.card.schema import ModelCard, ModelError, card_path, int8_path, read_card, write_card, write_model
from model.faces.config import FAST_MODEL
from model.faces.embedder import Embedder, this_cpu_runs_int8_exactly
from model.networks.mobilefacenet import NetworkConfig
from model.release.quantize import add_int8, agreement
from tests.model.release.test_export import trained_looking_network

CONFIG = NetworkConfig(input_size=32, embedding_dim=16, width=0.25)


@pytest.fixture
def model(tmp_path):
    """A small network with a complete card (the fast model's figures, which its Markdown renders)."""
    out = tmp_path / "m.pt"
    shipped = {k: v for k, v in read_card(FAST_MODEL).items() if k not in ("cohort", "int8")}
    card = write_model(trained_looking_network(CONFIG).state_dict(), "MobileFaceNet", CONFIG.as_dict(), out)
    write_card(out, {**shipped, **card, "augment": "flip", "thresholds": {**shipped["thresholds"], "default": 0.9}})
    return out


def crops(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def quantized(model, count: int) -> dict:
    """`add_int8` on random crops, and thresholds for int8 that differ from fp32's (model.release.quantize
    calibrates them on the validation data, which these tests do without)."""
    add_int8(model, crops(count, seed=0), f"{count} random crops")
    card = read_card(model)
    card["int8"]["thresholds"] = {**card["thresholds"], "default": 0.8}
    write_card(model, card)
    return card


def weights_range(path) -> tuple[int, int]:
    """The smallest and largest of an ONNX network's int8 weights."""
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8]
    return int(min(w.min() for w in weights)), int(max(w.max() for w in weights))


def test_the_int8_network_gives_the_networks_embeddings_within_int8s_error(model):
    card = quantized(model, 64)
    assert card["int8"]["file"] == int8_path(model).name and card["int8"]["calibration"] == "64 random crops"
    reference, int8 = (Embedder.load(model, "cpu", precision=p) for p in ("fp32", "int8"))
    assert int8.precision == "int8" and int8.model_id == reference.model_id  # the same model, in other arithmetic
    assert (reference.card.threshold, int8.card.threshold) == (0.9, 0.8)  # each decided by its own thresholds
    # auto, the default: int8 on the CPU where the card calibrated it, for its augmentation only; its 7-bit weights
    # run exactly on every CPU (tests/model/networks/test_dlib_resnet.py)
    assert card["int8"]["weight_bits"] == 7 and "7 bits" in card["int8"]["format"]
    low, high = weights_range(int8_path(model))
    assert max(-low, high) == 64  # 7 bits, used up: 2 x 255 x 64 fits in VPMADDUBSW's 16 bits, 2 x 255 x 127 would not
    assert Embedder.load(model, "cpu").precision == "int8"
    assert Embedder.load(model, "cpu", "views").precision == "fp32"
    faces = crops(32, seed=1)  # not the calibration's
    cosine = np.sum(reference.embed(faces) * int8.embed(faces), axis=1)
    assert 0.98 < cosine.min() and cosine.mean() < 0.99999  # close, and really quantized
    assert np.allclose(np.linalg.norm(int8.embed(faces), axis=1), 1.0, atol=1e-5)


def test_a_card_whose_int8_weights_take_8_bits_is_run_in_int8_only_by_a_cpu_that_adds_them_exactly(model):
    """An older card (no `weight_bits`: 8) on an x86 CPU without VNNI or AMX would saturate: auto runs fp32."""
    card = quantized(model, 16)
    del card["int8"]["weight_bits"]
    write_card(model, card)
    assert ModelCard.read(card_path(model)).int8_weight_bits == 8
    assert Embedder.load(model, "cpu").precision == ("int8" if this_cpu_runs_int8_exactly(8) else "fp32")
    assert Embedder.load(model, "cpu", precision="int8").precision == "int8"  # asked for: run, with a warning


def test_a_model_without_an_int8_network_or_with_another_file_is_refused(model):
    with pytest.raises(ModelError, match="ships no int8 network"):
        Embedder.load(model, "cpu", precision="int8")
    assert Embedder.load(model, "cpu").precision == "fp32"  # auto, without one
    add_int8(model, crops(16, seed=0), "16 random crops")
    with pytest.raises(ModelError, match="no thresholds calibrated for its int8 network"):
        Embedder.load(model, "cpu", precision="int8")
    quantized(model, 16)
    with pytest.raises(ModelError, match="calibrated with flip only"):
        Embedder.load(model, "cpu", "views", precision="int8")
    blob = bytearray(int8_path(model).read_bytes())
    blob[-1] ^= 1
    int8_path(model).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="does not match its card"):
        Embedder.load(model, "cpu", precision="int8")
    int8_path(model).unlink()
    with pytest.raises(ModelError, match="cannot read the int8 network"):
        Embedder.load(model, "cpu", precision="int8")
    Embedder.load(model, "cpu", precision="fp32")  # the network itself is untouched


def test_agreement_reports_the_cosine_and_the_largest_change_of_a_pair_distance():
    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    b = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    figures = agreement(a, b)
    assert figures["cosine_min"] == pytest.approx(0.8) and figures["cosine_mean"] == pytest.approx(0.9)
    # the pair's distance was sqrt(2), is sqrt(0.4 ** 2 + 0.8 ** 2)
    assert figures["pair_distance_change_max"] == pytest.approx(np.sqrt(2) - np.sqrt(0.8), abs=1e-6)
