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
    assert body["match"] is True
    assert body["distance"] <= body["threshold"]
    assert len(body["face"]["box"]) == 4


@pytest.mark.parametrize("claimed,actual", [("Tony_Blair", "Colin_Powell"), ("Serena_Williams", "Laura_Bush"),
                                            ("Hugo_Chavez", "Vladimir_Putin")])
def test_another_person_is_rejected(gallery, photos, claimed, actual):
    body = verify(gallery, claimed, photos.bytes(actual, 2)).json()
    assert body["match"] is False
    assert body["distance"] > body["threshold"]


def test_verify_reports_the_calibrated_threshold_and_model(gallery, photos):
    from model.card.schema import ModelCard, card_path
    from model.faces.embedder import DEFAULT_MODEL

    card = ModelCard.read(card_path(DEFAULT_MODEL))
    body = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 3)).json()
    assert body["threshold"] == pytest.approx(card.threshold)
    assert body["model_id"] == gallery.get("/readyz").json()["model_id"]


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
    calibrated = gallery.app.state.runtime.service.threshold
    default = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 2)).json()
    strict = verify(gallery, "Tony_Blair", photos.bytes("Tony_Blair", 2), threshold="0.01").json()
    assert default["match"] is True and strict["match"] is False
    assert (default["threshold"], strict["threshold"]) == pytest.approx((calibrated, 0.01))
    assert default["distance"] == pytest.approx(strict["distance"])
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
