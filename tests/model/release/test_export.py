import numpy as np
import pytest
import torch

from model.card.schema import ModelError, card_path, write_model
from model.faces.embedder import Embedder
from model.networks.mobilefacenet import MobileFaceNet, NetworkConfig


def trained_looking_network(config: NetworkConfig) -> MobileFaceNet:
    """A network with non-trivial batch-norm statistics, as after training."""
    torch.manual_seed(0)
    network = MobileFaceNet(config).train()
    with torch.no_grad():
        for _ in range(3):
            network(torch.randn(8, 3, config.input_size, config.input_size))
    return network.eval()


def test_export_then_load_gives_identical_embeddings(tmp_path):
    config = NetworkConfig(input_size=32, embedding_dim=16, width=0.25)
    network = trained_looking_network(config)
    out = tmp_path / "m.pt"
    card = write_model(network.state_dict(), "MobileFaceNet", config.as_dict(), out, thresholds={"default": 0.9})
    embedder = Embedder.load(out, "cpu")
    crops = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    from model.networks import crops_to_tensor

    with torch.inference_mode():
        expected = network(crops_to_tensor(crops)).numpy()
    assert np.allclose(embedder.embed(crops), expected, atol=1e-6)
    assert embedder.model_id == card["model_id"] and embedder.card.threshold == 0.9
    assert np.allclose(np.linalg.norm(embedder.embed(crops), axis=1), 1.0, atol=1e-5)


def test_model_id_is_a_content_hash_of_the_weights(tmp_path):
    config = NetworkConfig(input_size=32, embedding_dim=16, width=0.25)
    a = write_model(trained_looking_network(config).state_dict(), "MobileFaceNet", config.as_dict(), tmp_path / "a.pt")
    b = write_model(trained_looking_network(config).state_dict(), "MobileFaceNet", config.as_dict(), tmp_path / "b.pt")
    other = MobileFaceNet(config)
    c = write_model(other.state_dict(), "MobileFaceNet", config.as_dict(), tmp_path / "c.pt")
    assert a["model_id"] == b["model_id"] != c["model_id"]


def test_a_card_for_another_preprocessing_is_refused(tmp_path):
    config = NetworkConfig(input_size=32, embedding_dim=16, width=0.25)
    out = tmp_path / "m.pt"
    write_model(MobileFaceNet(config).state_dict(), "MobileFaceNet", config.as_dict(), out, thresholds={"default": 1.0})
    card = card_path(out)
    card.write_text(card.read_text().replace('"preprocess": "fg-align', '"preprocess": "older'))
    with pytest.raises(ModelError):
        Embedder.load(out, "cpu")


def test_the_shipped_model_loads_with_a_calibrated_threshold():
    from model.faces.embedder import DEFAULT_MODEL

    embedder = Embedder.load(DEFAULT_MODEL, "cpu")
    card = embedder.card.data
    assert 0 < embedder.card.threshold < 2
    assert card["thresholds"]["default"] == card["thresholds"]["far_1e-3"] == card["thresholds"]["far_levels"]["0.001"]
    assert "CelebA" in card["thresholds"]["calibration"] and "LFW" not in card["thresholds"]["calibration"]
    assert card["model_id"] == embedder.model_id
    assert {"accuracy", "accuracy_std", "eer", "tar_at_far", "auc", "no_face"} <= set(card["metrics"]["lfw"])
    assert DEFAULT_MODEL.stat().st_size < 25 * 1024 * 1024


def test_calibration_by_hand():
    from model.card.curves import pair_distances, threshold_at_far

    # Four unit vectors at 0, 10, 90 and 180 degrees; the first two are the same person.
    angles = np.radians([0, 10, 90, 180])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    labels = np.array(["a", "a", "b", "c"])
    genuine, impostors = pair_distances(vectors, labels)
    impostors = np.sort(impostors)
    chord = lambda degrees: 2 * np.sin(np.radians(degrees) / 2)  # noqa: E731
    expected = np.sort([chord(d) for d in (90, 180, 80, 170, 90)])  # every cross-identity pair, once
    assert np.allclose(impostors, expected, atol=1e-5) and np.allclose(genuine, [chord(10)], atol=1e-5)
    threshold = threshold_at_far(impostors, far=0.2)  # 1 of 5 impostors may pass
    assert (impostors <= threshold).sum() == 1 and threshold < impostors[1]


def test_a_student_on_dlibs_chip_is_served_that_chip_at_its_own_size(tmp_path, testfaces, make_client):
    """A MobileFaceNet distilled online (model/configs/mfn112-online-gpu.toml) takes dlib's chip at its input size:
    its card says dlib-chip-v1, evaluation and the service align that chip at 48 px, and the service serves it."""
    from model.evaluation.evaluate import pipeline_config
    from model.faces.config import SERVICE_POLICY
    from model.faces.pipeline import FacePipeline
    from model.faces.prepare import prepare
    from model.networks import crops_to_tensor
    from tests.client import enroll, verify

    config = NetworkConfig(input_size=48, embedding_dim=16, width=0.25)
    network = trained_looking_network(config)
    out = tmp_path / "student.pt"
    write_model(network.state_dict(), "MobileFaceNet", config.as_dict(), out, preprocess="dlib-chip-v1",
                thresholds={"default": 0.5})
    embedder = Embedder.load(out, "cpu")
    photo = (testfaces / "lfw/Colin_Powell/Colin_Powell_0001.jpg").read_bytes()
    _, chip = prepare(photo, FacePipeline(pipeline_config(embedder)), SERVICE_POLICY)
    assert chip.shape == (48, 48, 3)  # dlib's chip, scaled (tests/model/faces/test_pipeline.py)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(network(crops_to_tensor(chip[None])), dim=1).numpy()
    assert np.allclose(embedder.embed(chip[None]), expected, atol=1e-5)
    client = make_client(model_path=out)
    assert client.get("/readyz").json()["model_id"] == embedder.model_id
    assert enroll(client, "cp", photo).status_code == 201
    body = verify(client, "cp", photo).json()
    assert body["match"] is True and body["distance"] < 1e-4
