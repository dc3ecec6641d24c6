"""The loaded model and the index are shared by every request thread."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.client import enroll, identify, verify


def test_concurrent_requests_all_get_the_same_answers(client, photos):
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    enroll(client, "cp", photos.bytes("Colin_Powell", 1))
    probes = [("tb", photos.bytes("Tony_Blair", 2)), ("cp", photos.bytes("Colin_Powell", 2)),
              ("tb", photos.bytes("Colin_Powell", 3))] * 4
    expected = [verify(client, who, photo).json()["distance"] for who, photo in probes]
    ranked = [[c["employee_id"] for c in identify(client, photo).json()["candidates"]] for _, photo in probes]
    with ThreadPoolExecutor(max_workers=6) as pool:
        verified = list(pool.map(lambda probe: verify(client, *probe).json(), probes))
        identified = list(pool.map(lambda probe: identify(client, probe[1]).json(), probes))
    assert [v["distance"] for v in verified] == pytest.approx(expected, abs=1e-5)
    assert [[c["employee_id"] for c in i["candidates"]] for i in identified] == ranked


def test_concurrent_enrolls_of_one_id_store_one_employee(client, photos):
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(lambda _: enroll(client, "same", photos.bytes("Laura_Bush", 1)).status_code,
                                   range(4)))
    assert statuses.count(201) == 1 and set(statuses) == {201, 409}
    assert client.get("/employees").json()["total"] == 1
    assert client.get("/readyz").json()["templates"] == 1


def test_micro_batched_requests_get_the_answers_of_unbatched_ones(make_client, photos):
    """FACEGATE_MICRO_BATCH=on (the default on CUDA only) changes how faces reach the network, not the answers."""
    plain = make_client(micro_batch="off")
    enroll(plain, "tb", photos.bytes("Tony_Blair", 1))
    probes = [photos.bytes(name, n) for name in ("Tony_Blair", "Colin_Powell") for n in (2, 3)] * 3
    expected = [verify(plain, "tb", photo).json()["distance"] for photo in probes]
    make_client.stop(plain)
    batched = make_client(micro_batch="on", micro_batch_delay_ms=20)
    with ThreadPoolExecutor(max_workers=6) as pool:
        distances = list(pool.map(lambda photo: verify(batched, "tb", photo).json()["distance"], probes))
    assert distances == pytest.approx(expected, abs=1e-5)
    batcher = batched.app.state.runtime.service.batcher
    assert batcher.faces == len(probes) and batcher.batches < len(probes)
