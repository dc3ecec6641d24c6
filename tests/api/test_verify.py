import pytest

from tests.client import enroll, error_code, verify
from tests.markers import genuine_cases

PEOPLE = ["Tony_Blair", "Colin_Powell", "Serena_Williams", "Hugo_Chavez", "Laura_Bush"]


@pytest.fixture
def gallery(client, photos):
    for person in PEOPLE:
        assert enroll(client, person, photos.bytes(person, 1)).status_code == 201
    return client


@pytest.mark.parametrize("person", genuine_cases(PEOPLE))
def test_the_same_person_verifies(gallery, photos, person):
    body = verify(gallery, person, photos.bytes(person, 2)).json()
    assert body["match"] is True and body["rule"] == "as-norm"
    assert body["score"] >= body["threshold"]
    assert len(body["face"]["box"]) == 4


@pytest.mark.parametrize("claimed,actual", [("Tony_Blair", "Colin_Powell"), ("Serena_Williams", "Laura_Bush"),
                                            ("Hugo_Chavez", "Vladimir_Putin")])
def test_another_person_is_rejected(gallery, photos, claimed, actual):
    body = verify(gallery, claimed, photos.bytes(actual, 2)).json()
    assert body["match"] is False
    assert body["score"] < body["threshold"]


def test_verify_reports_the_calibrated_threshold_and_model(gallery, photos):
    """The shipped model's cohort decides: the score threshold is the card's normalised tail at FAR 1e-3 (on the
    CPU, int8's own: the default there), and the score is the AS-norm of the cosine, computed here by hand from
    the cohort file."""
    import numpy as np
    import torch

    from model.card.curves import interpolated
    from model.card.schema import ModelCard, card_path
    from model.faces.embedder import DEFAULT_MODEL

    service = gallery.app.state.runtime.service
    card = ModelCard.read(card_path(DEFAULT_MODEL))
    if torch.cuda.is_available():
        assert next(iter(gallery.app.state.runtime.models.values())).precision == "fp16"
    else:  # the CPU's default: the card's int8 network, decided by its own thresholds
        assert next(iter(gallery.app.state.runtime.models.values())).precision == "int8"
        card = card.for_int8()
    body = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 3)).json()
    assert body["rule"] == "as-norm"
    assert body["threshold"] == pytest.approx(interpolated(card.normalised_levels_for("flip")[1], 1e-3))
    assert body["model_id"] == gallery.get("/readyz").json()["model_id"]

    cohort = card.cohort(DEFAULT_MODEL, "flip")
    template = service.probe(photos.bytes("Tony_Blair", 1)).vector
    probe = service.probe(photos.bytes("Tony_Blair", 3)).vector

    def stats(v):
        top = np.sort(cohort.vectors @ v)[-cohort.k:]
        return top.mean(), top.std()

    (mt, st), (mp, sp) = stats(template), stats(probe)
    cosine = float(template @ probe)
    assert body["score"] == pytest.approx(((cosine - mt) / st + (cosine - mp) / sp) / 2, abs=1e-3)


def test_a_fixed_distance_threshold_decides_by_distance(make_client, photos):
    """FACEGATE_THRESHOLD: an operator's distance, for the whole service; the cohort does not decide."""
    from tests.client import identify

    client = make_client(threshold=0.3, identify_candidates=True)
    for person in ("Tony_Blair", "Colin_Powell", "Laura_Bush"):
        enroll(client, person, photos.bytes(person, 1))
    body = verify(client, "Tony_Blair", photos.bytes("Tony_Blair", 2)).json()
    assert (body["rule"], body["threshold"], body["score"]) == ("distance", pytest.approx(0.3), None)
    assert body["match"] == (body["distance"] <= 0.3)
    # identify ranks by distance too, and decides by it
    found = identify(client, photos.bytes("Tony_Blair", 2)).json()
    distances = [c["distance"] for c in found["candidates"]]
    assert found["rule"] == "distance" and distances == sorted(distances)
    assert all(c["score"] is None for c in found["candidates"]) and found["threshold"] <= 0.3


def test_each_augmentation_serves_the_threshold_calibrated_with_it(make_client, photos):
    """FACEGATE_AUGMENT=none embeds without the mirror, and decides with the threshold the card calibrated for
    that, not the default's; an unknown augmentation is refused at start-up."""
    from pydantic import ValidationError

    from app.core.config import Settings
    from model.card.schema import ModelCard, card_path
    from model.faces.embedder import DEFAULT_MODEL

    card = ModelCard.read(card_path(DEFAULT_MODEL))
    assert card.threshold_for("none") != card.threshold_for(card.augment)
    plain = make_client(augment="none")
    assert enroll(plain, "Tony_Blair", photos.bytes("Tony_Blair", 1)).status_code == 201
    body = verify(plain, "Tony_Blair", photos.bytes("Tony_Blair", 2)).json()
    assert body["threshold"] == pytest.approx(card.threshold_for("none")) and body["match"] is True
    with pytest.raises(ValidationError):
        Settings(augment="mirror")


def test_a_per_request_threshold_can_only_make_the_decision_stricter(gallery, photos):
    """A request's threshold is a distance: the match must also be within it (never looser than the calibrated
    distance threshold, whatever the rule)."""
    calibrated = gallery.app.state.runtime.service.threshold
    default = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 2)).json()
    strict = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 2), threshold="0.01").json()
    assert default["match"] is True and strict["match"] is False
    assert default["threshold"] == pytest.approx(strict["threshold"]), "the score threshold is the card's"
    assert default["distance"] == pytest.approx(strict["distance"])
    assert default["score"] == pytest.approx(strict["score"])
    # threshold=2.0 once turned every stranger into a match
    for loose in ("2.0", "1.99", f"{calibrated + 1e-3:.6f}"):
        response = verify(gallery, "Tony_Blair", photos.bytes("Colin_Powell", 2), threshold=loose)
        assert (response.status_code, error_code(response)) == (422, "threshold_too_loose"), loose


@pytest.mark.parametrize("threshold", ["0", "-0.5", "2.5", "abc"])
def test_an_insane_threshold_is_refused(gallery, photos, threshold):
    response = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 2), threshold=threshold)
    assert response.status_code == 422 and error_code(response) == "validation_error"


def test_verify_an_unknown_employee_returns_404(client, photos):
    response = verify(client, "nobody", photos.bytes("Tony_Blair"))
    assert response.status_code == 404 and error_code(response) == "employee_not_found"


def test_int8_makes_the_same_decisions_with_distances_a_little_apart(make_client, photos):
    """FACEGATE_PRECISION=int8 on a replica of a gallery that fp32 enrolled (one model_id: the precision may
    change under a running gallery): the card's quantized network decides the same, at its own thresholds, its
    distances int8's error away from fp32's, far less than the margins these photos are decided by."""
    fp32 = make_client(precision="fp32")
    for person in ("Tony_Blair", "Colin_Powell"):
        assert enroll(fp32, person, photos.bytes(person, 1)).status_code == 201
    int8 = make_client(precision="int8")  # it loads the gallery as it starts
    probes = [photos.bytes(person, 2) for person in ("Tony_Blair", "Colin_Powell")]
    ours, theirs = ([verify(client, "Tony_Blair", probe).json() for probe in probes] for client in (fp32, int8))
    assert [a["match"] for a in ours] == [a["match"] for a in theirs] == [True, False]
    for a, b in zip(ours, theirs, strict=True):
        assert 0 < abs(a["distance"] - b["distance"]) < 0.03
        assert a["threshold"] != b["threshold"]  # int8's own calibration (the card's int8.thresholds)
