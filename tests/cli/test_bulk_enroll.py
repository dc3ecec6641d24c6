"""Bulk enrollment from a folder: every good photo is enrolled as /enroll would, every bad one is reported,
and a second run resumes instead of starting over."""

import os
import shutil
import signal
import subprocess
import time

import pytest
from sqlalchemy import create_engine, func, select

from app.cli.bulk_enroll import bulk_enroll, jobs_from_csv, jobs_from_folders, main
from app.core.config import Settings
from app.gallery.models import Employee
from tests.client import verify
from tests.commands import alive, grandchildren, start_in_background, stop, survivors, wait_for


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
    assert impostor["match"] is False and impostor["score"] < impostor["threshold"]


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


def test_a_folder_s_next_photos_become_more_references(tmp_path, photos, database_url, make_client):
    """--references 3: the first photo enrolls, the next two are added as references; a bad one among them is
    reported and the others are kept; a bad first photo enrolls nobody.

    dlib's CNN detector has run in this process first (a photo without a face falls back to it): workers forked
    from such a process hung in it, so the bulk run gets a deadline."""
    import threading

    from tests.client import enroll, references_of
    from tests.photos import blank_photo
    from tests.waiting import PROPAGATION_S, within

    client = make_client()
    assert enroll(client, "nobody", blank_photo()).status_code == 422  # the CNN detector ran here

    root = tmp_path / "people"
    for employee, files in {"tb": [("Tony_Blair", 1), ("Tony_Blair", 2), ("Tony_Blair", 3)],
                            "cp": [("Colin_Powell", 1), None, ("Colin_Powell", 3)],
                            "sw": [None, ("Serena_Williams", 2)]}.items():
        (root / employee).mkdir(parents=True)
        for i, photo in enumerate(files):
            target = root / employee / f"{i}.jpg"
            target.write_bytes(photos.bytes(*photo) if photo else blank_photo())
    settings = Settings(database_url=database_url, auto_migrate=True)
    done = []
    run = threading.Thread(target=lambda: done.append(bulk_enroll(list(jobs_from_folders(root, references=3)),
                                                                  settings, processes=2, batch_size=4)), daemon=True)
    run.start()
    run.join(timeout=180)
    assert done, "bulk enrollment did not finish in 180 s"
    summary = done[0]
    assert (summary.enrolled, summary.references) == (2, 3)
    assert sorted((f.employee_id, f.path.rsplit("/", 1)[-1], f.code) for f in summary.failures) == [
        ("cp", "1.jpg", "no_face"), ("sw", "0.jpg", "no_face")]

    # the running replica follows through the change feed
    within(PROPAGATION_S, lambda: verify(client, "tb", photos.bytes("Tony_Blair", 3)).json().get("references") == 3)
    assert references_of(client, "tb") == [0, 1, 2] and references_of(client, "cp") == [0, 1]
    assert client.get("/employees/sw").status_code == 404
    answer = verify(client, "tb", photos.bytes("Tony_Blair", 3)).json()
    assert answer["references"] == 3 and answer["match"]  # the three fused: photo 3 is one of them, not all


def test_references_are_refused_beyond_the_limit_and_with_a_csv(tmp_path, photos, sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("FACEGATE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FACEGATE_MAX_REFERENCES", "2")
    (tmp_path / "tb").mkdir()
    for flag in (["--references", "3"], ["--references", "0"], ["--references", "2", "--csv", "map.csv"]):
        with pytest.raises(SystemExit) as exit_:
            main([str(tmp_path), *flag])
        assert exit_.value.code == 2
    assert "--references" in capsys.readouterr().err


PEOPLE = ("Tony_Blair", "Colin_Powell", "Laura_Bush", "Serena_Williams", "Hugo_Chavez", "Ariel_Sharon",
          "Vladimir_Putin", "Junichiro_Koizumi")


def start_in_the_background(tmp_path, photos, sqlite_url) -> tuple[subprocess.Popen, tuple]:
    """The CLI started as a background job on the eight PEOPLE, one worker and one photo a batch. Returns the
    process and the arguments that run it again."""
    for person in PEOPLE:
        (tmp_path / "people" / person).mkdir(parents=True)
        shutil.copy(photos.path(person, 1), tmp_path / "people" / person / "a.jpg")
    args = (str(tmp_path / "people"), "--processes", "1", "--batch-size", "1")
    return start_in_background("app.cli.bulk_enroll", *args, "--progress",
                               env={"FACEGATE_DATABASE_URL": sqlite_url}), args


def its_worker(process: subprocess.Popen) -> int:
    """The CLI's worker process (under its fork server), as soon as it has one."""
    deadline = time.monotonic() + 60
    while not (workers := grandchildren(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(workers) == 1, workers
    return workers[0]


def carries_on(args, sqlite_url, monkeypatch, capsys, *, some: bool = True) -> None:
    """Not all the PEOPLE are committed (`some`: some are), and a second run enrolls only the rest."""
    employees = len(PEOPLE)
    engine = create_engine(sqlite_url)
    with engine.connect() as connection:
        enrolled = connection.scalar(select(func.count(Employee.id)))
    assert some <= enrolled < employees, f"{enrolled} of {employees}: the run ended too late to test resuming"
    monkeypatch.setenv("FACEGATE_DATABASE_URL", sqlite_url)
    assert main([*args, "--no-progress"]) == 0
    assert f"enrolled {employees - enrolled}, skipped {enrolled} already enrolled" in capsys.readouterr().out
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Employee.id))) == employees
    engine.dispose()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_cli_cleanly_and_the_next_run_carries_on(tmp_path, photos, sqlite_url, signum,
                                                                    monkeypatch, capsys):
    """Started as a background job starts it (SIGINT ignored), Ctrl-C or a supervisor's SIGTERM still stops it:
    what is embedded is committed, the last line says so, the exit status is 128 + the signal, and a second
    run enrolls only the rest."""
    process, args = start_in_the_background(tmp_path, photos, sqlite_url)
    wait_for(process, b" 1/")  # the progress bar: the first employee is committed
    lines = stop(process, signum)
    assert lines[-1].startswith(f"stopped by {signal.Signals(signum).name}: the ") and "run the same" in lines[-1]
    carries_on(args, sqlite_url, monkeypatch, capsys)


def test_a_worker_that_dies_stops_the_cli_and_the_next_run_carries_on(tmp_path, photos, sqlite_url, monkeypatch,
                                                                      capsys):
    """A worker process killed (by the kernel, for memory, say) ends the run instead of hanging it: the last
    line says so, the exit status is 1, and a second run enrolls the rest. It is killed as soon as it starts,
    before it can have cropped every photo (it would, while the main process loads the model, if it were
    killed later): so nothing may be enrolled yet; committing what is embedded is the signal's path."""
    process, args = start_in_the_background(tmp_path, photos, sqlite_url)
    os.kill(its_worker(process), signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (process.returncode, err[-2000:])
    assert out.decode().splitlines()[-1].startswith("stopped by a worker process's death: the ")
    assert b"a worker process died" in err
    carries_on(args, sqlite_url, monkeypatch, capsys, some=False)


def test_the_workers_end_with_a_cli_killed_outright(tmp_path, photos, sqlite_url):
    """kill -9 (or the kernel, for memory) cannot let the CLI stop its workers: they must not outlive it, each
    holding its models, waiting on a queue no one writes to."""
    process, _ = start_in_the_background(tmp_path, photos, sqlite_url)
    wait_for(process, b" 1/")
    worker = its_worker(process)
    assert alive(worker)
    process.kill()
    process.wait()
    left = survivors([worker])
    process.stdout.close()
    process.stderr.close()
    assert not left


def test_groups_from_the_command_line_and_the_csv_are_joined_and_unknown_ones_fail(tmp_path, photos, database_url,
                                                                                      make_client, monkeypatch, capsys):
    client = make_client()
    for group_id in ("site", "lab-3"):
        assert client.post("/groups", data={"group_id": group_id}).status_code == 201
    for i, person in enumerate(("Tony_Blair", "Colin_Powell", "Laura_Bush")):
        (tmp_path / f"{i}.jpg").write_bytes(photos.bytes(person, 1))
    mapping = tmp_path / "map.csv"
    mapping.write_text("employee_id,path,groups\ntb,0.jpg,lab-3\ncp,1.jpg,\nlb,2.jpg,lab-3;nowhere\n")
    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    assert main([str(tmp_path), "--csv", str(mapping), "--group", "site", "--processes", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "enrolled 2" in out and "group_not_found: 1" in out
    assert client.get("/employees/lb").status_code == 404, "a row naming a missing group is not enrolled"

    def members(group_id):
        return [e["employee_id"] for e in client.get(f"/groups/{group_id}/members").json()["items"]]

    assert (members("site"), members("lab-3")) == (["cp", "tb"], ["tb"])
    assert client.get("/employees/tb").json()["groups"] == ["lab-3", "site"]
    # a second run skips the enrolled and still writes their memberships (a run stopped in between)
    assert client.delete("/groups/site/members/cp").status_code == 204
    main([str(tmp_path), "--csv", str(mapping), "--group", "site", "--processes", "1", "--no-progress"])
    assert members("site") == ["cp", "tb"]


def test_a_csv_name_is_held_to_the_api_s_rule(tmp_path, photos, database_url):
    """A name over 200 characters stopped the whole run with a traceback on PostgreSQL (the column's length),
    and went in whole on SQLite; names with control characters or direction overrides went in on both."""
    for i, person in enumerate(("Tony_Blair", "Colin_Powell", "Laura_Bush", "Serena_Williams")):
        (tmp_path / f"{i}.jpg").write_bytes(photos.bytes(person, 1))
    mapping = tmp_path / "map.csv"
    mapping.write_text("employee_id,path,name\n" f"long,0.jpg,{'x' * 201}\n" "nul,1.jpg,a\0b\n"
                       "rlo,2.jpg,Ada\u202eevol\n" f"fine,3.jpg,{'y' * 200}\n", encoding="utf-8")
    summary = bulk_enroll(list(jobs_from_csv(tmp_path, mapping)), Settings(database_url=database_url,
                                                                           auto_migrate=True), processes=1)
    assert summary.enrolled == 1
    assert sorted((f.employee_id, f.code) for f in summary.failures) == [
        ("long", "validation_error"), ("nul", "validation_error"), ("rlo", "validation_error")]
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(select(Employee.employee_id, func.length(Employee.name))).all() == [("fine", 200)]
    engine.dispose()
