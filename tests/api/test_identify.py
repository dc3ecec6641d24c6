import pytest

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


def test_the_1_to_n_threshold_is_stricter_than_1_to_1_and_reported(gallery, photos):
    service = gallery.app.state.runtime.service
    body = identify(gallery, photos.bytes("Tony_Blair", 2)).json()
    assert body["threshold"] == pytest.approx(service.identify_threshold)
    assert body["threshold"] < service.threshold, "six templates are six chances for a stranger"


@pytest.mark.parametrize("stranger", ["Vladimir_Putin", "Junichiro_Koizumi", "Jennifer_Capriati"])
def test_with_candidates_listed_a_stranger_sees_only_farther_ones(listing_gallery, photos, stranger):
    body = identify(listing_gallery, photos.bytes(stranger, 1)).json()
    assert body["match"] is None
    assert body["candidates"], "the nearest employees are listed when the setting is on"
    assert all(c["distance"] > body["threshold"] for c in body["candidates"])


def test_candidates_are_sorted_and_cut_at_top_k(listing_gallery, photos):
    body = identify(listing_gallery, photos.bytes("Tony_Blair", 3), top_k="3").json()
    distances = [c["distance"] for c in body["candidates"]]
    assert len(distances) == 3 and distances == sorted(distances)
    assert len(identify(listing_gallery, photos.bytes("Tony_Blair", 3)).json()["candidates"]) == 5  # the default


def test_identify_on_an_empty_gallery_is_unknown(client, photos):
    body = identify(client, photos.bytes("Tony_Blair")).json()
    assert body == {**body, "match": None, "candidates": []}


@pytest.mark.parametrize("top_k", ["0", "101", "many"])
def test_top_k_out_of_range_is_refused(client, photos, top_k):
    response = identify(client, photos.bytes("Tony_Blair"), top_k=top_k)
    assert response.status_code == 422 and error_code(response) == "validation_error"
