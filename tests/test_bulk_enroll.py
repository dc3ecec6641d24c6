"""Bulk enrollment from a folder: every good photo is enrolled as /enroll would, every bad one is reported,
and a second run resumes instead of starting over."""

import shutil

import pytest

from app.bulk_enroll import bulk_enroll, jobs_from_csv, jobs_from_folders, main
from app.core.config import Settings
from tests.client import verify


@pytest.fixture
def folder(tmp_path, photos):
    root = tmp_path / "people"
    for person in ("Tony_Blair", "Colin_Powell", "Laura_Bush", "Serena_Williams"):
        (root / person).mkdir(parents=True)
        shutil.copy(photos.path(person, 1), root / person / "a.jpg")
        shutil.copy(photos.path(person, 2), root / person / "b.jpg")  # not the reference: sorted second
    (root / "broken").mkdir()
    (root / "broken" / "a.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "empty").mkdir()
    (root / "bad id!").mkdir()
    shutil.copy(photos.path("Hugo_Chavez", 1), root / "bad id!" / "a.jpg")
    return root


def test_a_folder_is_enrolled_and_failures_have_reasons(folder, database_url, make_client, photos):
    settings = Settings(database_url=database_url, auto_migrate=True)
    summary = bulk_enroll(list(jobs_from_folders(folder)), settings, processes=2, batch_size=3)
    assert summary.enrolled == 4 and summary.skipped == 0
    assert sorted((f.employee_id, f.code) for f in summary.failures) == [
        ("bad id!", "validation_error"), ("broken", "invalid_image"), ("empty", "no_photo")]

    again = bulk_enroll(list(jobs_from_folders(folder)), settings, processes=2)
    assert again.enrolled == 0 and again.skipped == 4, "a second run resumes: nothing is enrolled twice"

    client = make_client()
    assert client.get("/readyz").json()["templates"] == 4
    bulk_distance = verify(client, "Tony_Blair", photos.bytes("Tony_Blair", 1)).json()["distance"]
    assert bulk_distance == pytest.approx(0.0, abs=1e-3), "the stored template is the reference photo's"
    impostor = verify(client, "Colin_Powell", photos.bytes("Tony_Blair", 1)).json()
    assert impostor["match"] is False and impostor["distance"] > impostor["threshold"]


def test_a_csv_maps_ids_names_and_photos(tmp_path, photos, sqlite_url):
    (tmp_path / "x.jpg").write_bytes(photos.bytes("Laura_Bush", 1))
    (tmp_path / "y.jpg").write_bytes(photos.bytes("Laura_Bush", 2))
    mapping = tmp_path / "map.csv"
    mapping.write_text("employee_id,path,name\ne-1,x.jpg,Laura Bush\ne-1,y.jpg,Twice\ne-2,missing.jpg,\n")
    jobs = list(jobs_from_csv(tmp_path, mapping))
    assert [(j.employee_id, j.name) for j in jobs] == [("e-1", "Laura Bush"), ("e-1", "Twice"), ("e-2", None)]
    summary = bulk_enroll(jobs, Settings(database_url=sqlite_url), processes=1)
    assert summary.enrolled == 1
    assert sorted(f.code for f in summary.failures) == ["duplicate_employee_id", "unreadable"]


def test_the_cli_reports_and_exits_non_zero_on_failures(folder, sqlite_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FACEGATE_DATABASE_URL", sqlite_url)
    report = tmp_path / "failures.csv"
    assert main([str(folder), "--processes", "1", "--failures", str(report), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "enrolled 4, skipped 0" in out and "invalid_image: 1" in out
    assert len(report.read_text().splitlines()) == 4  # header + 3 failures
    (folder / "broken" / "a.jpg").unlink()
    shutil.rmtree(folder / "broken")
    shutil.rmtree(folder / "empty")
    shutil.rmtree(folder / "bad id!")
    assert main([str(folder), "--processes", "1", "--no-progress"]) == 0
    assert "enrolled 0, skipped 4" in capsys.readouterr().out
