import pytest

from model.card.curves import identify_score_threshold
from tests.client import enroll, error_code, identify
from tests.markers import genuine_cases

PEOPLE = ["Tony_Blair", "Colin_Powell", "Serena_Williams", "Hugo_Chavez", "Laura_Bush", "Ariel_Sharon"]


def enroll_people(client, photos):
    for person in PEOPLE:
        enroll(client, person, photos.bytes(person, 1), name=person.replace("_", " "))
    return client


@pytest.fixture
def gallery(client, photos):
    return enroll_people(client, photos)


@pytest.fixture
def listing_gallery(make_client, photos):
    """A service that lists candidates besides the match (FACEGATE_IDENTIFY_CANDIDATES=true)."""
    return enroll_people(make_client(identify_candidates=True), photos)


@pytest.mark.parametrize("person", genuine_cases(PEOPLE))
def test_identify_finds_the_right_employee(gallery, photos, person):
    body = identify(gallery, photos.bytes(person, 2)).json()
    assert body["match"]["employee_id"] == person
    assert body["match"]["name"] == person.replace("_", " ")
    assert body["candidates"] == [body["match"]], "a door's key sees the match and no other name"


@pytest.mark.parametrize("stranger", ["Vladimir_Putin", "Junichiro_Koizumi", "Jennifer_Capriati"])
def test_a_stranger_is_unknown_and_gets_no_names(gallery, photos, stranger):
    body = identify(gallery, photos.bytes(stranger, 1)).json()
    assert body["match"] is None
    assert body["candidates"] == [], "no employee's name or distance for a stranger's photo"


def test_the_1_to_n_threshold_is_on_the_normalised_score_and_stricter_than_one_comparison(gallery, photos):
    """The shipped model has a cohort: the AS-norm score ranks and decides, at a threshold that rises with N."""
    service = gallery.app.state.runtime.service
    body = identify(gallery, photos.bytes("Tony_Blair", 2)).json()
    assert body["rule"] == "as-norm"
    assert body["threshold"] == pytest.approx(service.identify_threshold)
    one = identify_score_threshold(service.serving.normalised_levels[1], fpir=1e-3, gallery_size=1)
    assert body["threshold"] > one, "six templates are six chances for a stranger"
    assert body["match"]["score"] >= body["threshold"]
    assert body["match"]["distance"] <= service.threshold, "never named where /verify would refuse"


@pytest.mark.parametrize("stranger", ["Vladimir_Putin", "Junichiro_Koizumi", "Jennifer_Capriati"])
def test_with_candidates_listed_a_stranger_sees_only_ones_that_do_not_pass(listing_gallery, photos, stranger):
    service = listing_gallery.app.state.runtime.service
    body = identify(listing_gallery, photos.bytes(stranger, 1)).json()
    assert body["match"] is None
    assert body["candidates"], "the best employees are listed when the setting is on"
    assert all(c["score"] < body["threshold"] or c["distance"] > service.threshold for c in body["candidates"])


def test_candidates_are_sorted_by_score_and_cut_at_top_k(listing_gallery, photos):
    body = identify(listing_gallery, photos.bytes("Tony_Blair", 3), top_k="3").json()
    scores = [c["score"] for c in body["candidates"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert len(identify(listing_gallery, photos.bytes("Tony_Blair", 3)).json()["candidates"]) == 5  # the default


def test_without_a_cohort_the_distance_decides(make_client, photos):
    """A service running another augmentation than the cohort's has no comparable cohort: plain distances."""
    client = enroll_people(make_client(augment="none", identify_candidates=True), photos)
    body = identify(client, photos.bytes("Tony_Blair", 3)).json()
    assert body["rule"] == "distance"
    distances = [c["distance"] for c in body["candidates"]]
    assert distances == sorted(distances) and all(c["score"] is None for c in body["candidates"])
    assert body["candidates"][0]["employee_id"] == "Tony_Blair"
    assert (body["match"] is not None) == (distances[0] <= body["threshold"])


def test_identify_on_an_empty_gallery_is_unknown(client, photos):
    body = identify(client, photos.bytes("Tony_Blair")).json()
    assert body == {**body, "match": None, "candidates": []}


@pytest.mark.parametrize("top_k", ["0", "101", "many"])
def test_top_k_out_of_range_is_refused(client, photos, top_k):
    response = identify(client, photos.bytes("Tony_Blair"), top_k=top_k)
    assert response.status_code == 422 and error_code(response) == "validation_error"
