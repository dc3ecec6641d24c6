"""The console (/console) and /docs in a real browser: Debian's Chromium, driven by Playwright, against a real
server (uvicorn in a subprocess, keys on, SQLite). Nothing may leave the machine: every request to another
host is aborted and fails the test, which is also how /docs is shown to work offline.

Chromium comes from the system (`apt-get install chromium`; .ci/run installs it), never downloaded by a test
tool. Without it these tests skip, unless FACEGATE_REQUIRE_BROWSER=1 (CI), where they fail instead.
FACEGATE_SCREENSHOTS=DIR saves the screens the README shows (docs/console), with the photos painted over: the
test faces are research data, not ours to publish.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bursts import CAPPED, door_film, frontal_frame
from tests.live import LiveServer, live_server
from tests.photos import blank_photo

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("FACEGATE_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("FACEGATE_REQUIRE_BROWSER") == "1"
SCREENSHOTS = os.environ.get("FACEGATE_SCREENSHOTS")
# As root and without a desktop: no sandbox, no GPU; none of Chromium's own calls home on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]
TIMEOUT_MS = 30_000


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"FACEGATE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright():
    """One Playwright per module: its sync API runs one event loop, which every browser here shares."""
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (scripts/setup.sh --dev)")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright):  # noqa: ANN001
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def camera_browser(playwright, testfaces: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001
    """A second Chromium whose webcam is a fake device that films one photo (Chromium's test capture device,
    fed an MJPEG file made here from a test face; nothing is written into the repository)."""
    from PIL import Image

    film = tmp_path_factory.mktemp("camera") / "face.mjpeg"
    photo = Image.open(testfaces / "lfw" / "Tony_Blair" / "Tony_Blair_0001.jpg").convert("RGB")
    photo.resize((640, 640)).save(film, "JPEG", quality=92)  # one JPEG frame is an MJPEG film
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={film}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, testfaces: Path) -> Iterator[LiveServer]:
    database = tmp_path_factory.mktemp("console") / "gallery.db"
    # The door screen's webcam sample has faces only the CNN fallback finds (about 60 ms a frame, two frames
    # queued at once): its budget is raised from 1 s, lest a machine busy with the rest of the suite answer no_face.
    with live_server(f"sqlite:///{database}", log=database.with_suffix(".log"), fallback_seconds="5") as live:
        yield live


@pytest.fixture
def open_page(browser, server: LiveServer):  # noqa: ANN001, ANN201
    """open_page(width) -> a page of a fresh browser context, on which any request to another host than the
    test server is aborted, and fails the test at teardown."""
    contexts, outside = [], []

    def keep_local(route) -> None:  # noqa: ANN001
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def open_page(width: int = 1100, height: int = 900):  # noqa: ANN202
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.route("**/*", keep_local)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.js_errors = errors
        return page

    yield open_page
    for context in contexts:
        for page in context.pages:
            assert not page.js_errors, page.js_errors
        context.close()
    assert not outside, f"the page tried to reach other hosts: {outside}"


def sign_in(page, server: LiveServer, scope: str) -> None:  # noqa: ANN001
    page.goto(f"{server.url}/console")
    page.get_by_label("API key").fill(server.keys[scope])
    page.get_by_role("button", name="Sign in").click()
    page.locator("#nav").wait_for(state="visible")


def screenshot(page, name: str) -> None:  # noqa: ANN001
    if SCREENSHOTS:
        page.evaluate("""() => document.querySelectorAll("canvas").forEach((canvas) => {
            const context = canvas.getContext("2d");
            context.fillStyle = "#d0d7de";
            context.fillRect(0, 0, canvas.width, canvas.height);
            context.fillStyle = "#57606a";
            context.font = `${Math.round(canvas.width / 14)}px sans-serif`;
            context.fillText("(photo not shown)", canvas.width * 0.12, canvas.height / 2);
        })""")
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_an_admin_enrolls_from_a_file_lists_verifies_and_deletes(open_page, server, photos, tmp_path):
    from playwright.sync_api import expect

    page = open_page()
    sign_in(page, server, "admin")
    expect(page.locator("#employees-caption")).to_have_text("Employees: none")

    # enroll from a file: the face is found and checked before anything is sent
    page.locator("nav").get_by_role("button", name="Enroll").click()
    form = page.locator("#enroll-form")
    form.get_by_label("Employee id").fill("tb")
    form.get_by_label("Name (optional)").fill("Tony Blair")
    page.locator("#enroll-form input[type=file]").set_input_files(str(photos.path("Tony_Blair", 1)))
    expect(page.locator("#enroll-form figcaption")).to_have_text("Face found; the photo passes every check.")
    expect(page.locator("#enroll-form .checks li.pass")).to_have_count(6)
    screenshot(page, "console-enroll")
    form.get_by_role("button", name="Enroll").click()
    expect(page.locator("#enroll-result .verdict")).to_have_text("Enrolled tb")

    # listed
    page.locator("nav").get_by_role("button", name="Employees").click()
    row = page.locator("#employees-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("tb")
    expect(row.locator("td").nth(1)).to_have_text("Tony Blair")
    screenshot(page, "console-employees")

    # verified, the score drawn against the threshold
    page.locator("nav").get_by_role("button", name="Verify & identify").click()
    page.locator("#try-id").fill("tb")
    page.locator("#try-form input[type=file]").set_input_files(str(photos.path("Tony_Blair", 3)))
    page.locator("#try-form").get_by_role("button", name="Check").click()
    expect(page.locator("#try-result .verdict")).to_have_text("Match: this is tb")
    meter = page.locator("#try-result svg.meter")
    expect(meter).to_have_attribute("aria-label", re.compile(r"^score [0-9.]+ passes the threshold"))
    screenshot(page, "console-verify")
    # and an impostor is drawn short of it
    page.locator("#try-form input[type=file]").set_input_files(str(photos.path("Colin_Powell", 1)))
    page.locator("#try-form").get_by_role("button", name="Check").click()
    expect(page.locator("#try-result .verdict")).to_have_text("No match: not tb")
    expect(meter).to_have_attribute("aria-label", re.compile(r"^score -?[0-9.]+ fails the threshold"))

    # a second reference, from the employee's page; then removed again
    page.locator("nav").get_by_role("button", name="Employees").click()
    page.get_by_role("link", name="tb").click()
    expect(page.locator("#references li")).to_have_count(1)
    expect(page.get_by_role("button", name="Remove reference 0")).to_be_disabled()  # the only one
    page.locator("#reference-form input[type=file]").set_input_files(str(photos.path("Tony_Blair", 2)))
    expect(page.locator("#reference-form figcaption")).to_have_text("Face found; the photo passes every check.")
    page.get_by_role("button", name="Add reference").click()
    expect(page.locator("#references li")).to_have_count(2)
    expect(page.locator("#status")).to_have_text("Added reference 1: tb now has 2.")
    screenshot(page, "console-employee")
    page.get_by_role("button", name="Remove reference 1").click()
    page.locator("#confirm").get_by_role("button", name="Remove").click()
    expect(page.locator("#references li")).to_have_count(1)

    # replaced, from the employee's page
    page.get_by_role("button", name="Replace the reference photo…").click()
    expect(form.get_by_label("Employee id")).to_have_value("tb")
    expect(page.locator("#enroll-replace")).to_be_checked()
    page.locator("#enroll-form input[type=file]").set_input_files(str(photos.path("Tony_Blair", 2)))
    expect(page.locator("#enroll-form figcaption")).to_have_text("Face found; the photo passes every check.")
    form.get_by_role("button", name="Enroll").click()
    expect(page.locator("#enroll-result .verdict")).to_have_text("Replaced the reference photo of tb")
    page.locator("#enroll-replace").uncheck()

    # a photo without a face: the API's error, worded for people, before and after sending
    blank = tmp_path / "no-face.jpg"
    blank.write_bytes(blank_photo())
    page.locator("nav").get_by_role("button", name="Enroll").click()
    form.get_by_label("Employee id").fill("nobody")
    page.locator("#enroll-form input[type=file]").set_input_files(str(blank))
    expect(page.locator("#enroll-form figcaption")).to_contain_text("No face was found in the photo")
    form.get_by_role("button", name="Enroll").click()
    expect(page.locator("#error")).to_contain_text("No face was found in the photo")
    expect(page.locator("#error")).to_be_focused()

    # deleted, after confirming
    page.locator("nav").get_by_role("button", name="Employees").click()
    page.get_by_role("button", name="Delete tb").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm").get_by_role("button", name="Cancel").click()
    expect(row).to_have_count(1)  # cancelled: still there
    page.get_by_role("button", name="Delete tb").click()
    page.locator("#confirm").get_by_role("button", name="Delete").click()
    expect(page.locator("#employees-caption")).to_have_text("Employees: none")

    # the audit log pages through what happened
    page.locator("nav").get_by_role("button", name="Audit log").click()
    expect(page.locator("#audit-table tbody tr").first.locator("td").nth(1)).to_have_text("delete")
    screenshot(page, "console-audit")
    page.locator("#audit-form select[name=action]").select_option("delete")
    page.locator("#audit-form").get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-table tbody tr").first.locator("td").nth(3)).to_have_text("deleted")
    expect(page.locator("#audit-caption")).to_have_text("Audit records, newest first: 1–1 of 1")


def test_employees_are_searched_and_paged(open_page, server, photos):
    import httpx
    from playwright.sync_api import expect

    photo = photos.bytes("Serena_Williams", 1)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys["admin"]}, timeout=60) as api:
        for i in range(25):
            response = api.post("/enroll", data={"employee_id": f"page-{i:02d}", "name": f"Paged {i}"},
                                files={"image": ("p.jpg", photo, "image/jpeg")})
            assert response.status_code == 201, response.text
    page = open_page()
    sign_in(page, server, "admin")
    page.get_by_label("Search by id or name").fill("page-")
    page.get_by_role("button", name="Search").click()
    caption = page.locator("#employees-caption")
    expect(caption).to_have_text("Employees matching “page-”: 1–20 of 25")
    previous, following = page.get_by_role("button", name="Previous"), page.get_by_role("button", name="Next")
    expect(previous).to_be_disabled()
    following.click()
    expect(caption).to_have_text("Employees matching “page-”: 21–25 of 25")
    expect(page.locator("#employees-table tbody tr")).to_have_count(5)
    expect(following).to_be_disabled()
    previous.click()
    expect(caption).to_have_text("Employees matching “page-”: 1–20 of 25")
    page.get_by_label("Search by id or name").fill("paged 7")  # names too, in any case
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#employees-table tbody tr td").first).to_have_text("page-07")


def test_a_verify_key_sees_no_admin_actions_and_the_server_refuses_them(open_page, server):
    from playwright.sync_api import expect

    page = open_page()
    sign_in(page, server, "verify")
    expect(page.locator("#view-try")).to_be_visible()
    for name in ("Employees", "Enroll", "Audit log"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()
    page.goto(f"{server.url}/console#employees")  # typed by hand: still the verify view
    expect(page.locator("#view-try")).to_be_visible()
    expect(page.locator("#view-employees")).to_be_hidden()
    # the page's own key, on the admin endpoints: refused by the server, not just hidden
    statuses = page.evaluate("""async () => {
        const headers = {"X-API-Key": sessionStorage.getItem("facegate.key")};
        const list = await fetch("/employees", {headers});
        const gone = await fetch("/employees/tb", {method: "DELETE", headers});
        const audit = await fetch("/audit", {headers});
        return [list.status, gone.status, audit.status];
    }""")
    assert statuses == [403, 403, 403]


def test_a_wrong_key_is_refused_in_words_and_nothing_is_kept(open_page, server):
    from playwright.sync_api import expect

    page = open_page()
    page.goto(f"{server.url}/console")
    page.get_by_label("API key").fill("fg_000000000000_not-a-real-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#error")).to_contain_text("That key was not accepted")
    expect(page.locator("#view-signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('facegate.key')") is None


def test_the_console_fits_360_px_and_works_by_keyboard(open_page, server):
    from playwright.sync_api import expect

    page = open_page(width=360, height=740)
    page.goto(f"{server.url}/console")
    page.get_by_label("API key").focus()
    page.keyboard.type(server.keys["admin"])
    page.keyboard.press("Enter")
    expect(page.locator("#view-employees")).to_be_visible()
    # signed in, the focus is on the sections' buttons: Tab moves along them, Enter opens one
    expect(page.locator("nav button[data-view=employees]")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Enroll":
            break
    page.keyboard.press("Enter")
    expect(page.locator("#view-enroll")).to_be_visible()
    for view in ("employees", "enroll", "try", "audit"):
        page.goto(f"{server.url}/console#{view}")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"#{view} is {width} px wide at 360 px: it scrolls sideways"
    screenshot(page, "console-360")


def test_docs_list_the_operations_with_the_network_blocked(open_page, server):
    from playwright.sync_api import expect

    page = open_page()
    page.goto(f"{server.url}/docs")
    operations = page.locator(".opblock-summary-path")
    expect(operations.first).to_be_visible()
    paths = set(operations.all_inner_texts())
    assert {"/enroll", "/verify", "/identify", "/employees/{employee_id}/references", "/audit", "/me",
            "/enroll/check"} <= {p.replace("\u200b", "") for p in paths}
    page.goto(f"{server.url}/redoc")
    expect(page.get_by_text("POST /verify", exact=False).first).to_be_attached()


@pytest.fixture
def camera_enroll(camera_browser, server: LiveServer):  # noqa: ANN001, ANN201
    """The enroll form, signed in as an admin, in a page of the browser whose webcam films a test photo."""
    context = camera_browser.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, server, "admin")
    page.locator("nav").get_by_role("button", name="Enroll").click()
    yield page, page.locator("#enroll-form")
    context.close()


def test_an_admin_enrolls_from_the_webcam(camera_enroll, photos):
    from playwright.sync_api import expect

    page, form = camera_enroll
    form.get_by_label("Employee id").fill("cam")
    form.get_by_role("button", name="Use the camera").click()
    expect(form.locator("video")).to_be_visible()
    form.get_by_role("button", name="Take the photo").click()
    expect(form.locator("video")).to_be_hidden()  # the camera is released once the photo is taken
    expect(form.locator("figcaption")).to_have_text("Face found; the photo passes every check.")
    form.get_by_role("button", name="Enroll").click()
    expect(page.locator("#enroll-result .verdict")).to_have_text("Enrolled cam")
    # the photo the camera took is the employee's: another photo of them verifies
    page.locator("nav").get_by_role("button", name="Verify & identify").click()
    page.locator("#try-id").fill("cam")
    page.locator("#try-form input[type=file]").set_input_files(str(photos.path("Tony_Blair", 3)))
    page.locator("#try-form").get_by_role("button", name="Check").click()
    expect(page.locator("#try-result .verdict")).to_have_text("Match: this is cam")


def test_an_admin_enrolls_with_a_guided_capture_of_three_shots(camera_enroll, server):
    """The console's guided capture: three shots from the webcam, each checked live, enrolled together as one
    employee's references (one fused template). The fake camera films one test photo."""
    from playwright.sync_api import expect

    page, form = camera_enroll
    form.get_by_label("Employee id").fill("cam3")
    form.get_by_role("button", name="Guided capture: 3 shots").click()
    expect(form.locator("video")).to_be_visible()
    expect(form.locator("figcaption")).to_have_text("Shot 1 of 3: look straight at the camera.")
    for shot, words in enumerate(["turn your head slightly to your left", "turn your head slightly to your right"],
                                 start=2):
        form.get_by_role("button", name=f"Take shot {shot - 1} of 3").click()
        expect(form.locator("figcaption")).to_have_text(f"Shot {shot} of 3: {words}.")
        expect(form.locator(".shots li")).to_have_count(shot - 1)
    form.get_by_role("button", name="Take shot 3 of 3").click()
    expect(form.locator("video")).to_be_hidden()  # the camera is released after the third shot
    expect(form.locator("figcaption")).to_have_text(
        "3 shots, each passing every check: they are enrolled together.")
    expect(form.locator(".shots li")).to_have_count(3)
    form.get_by_role("button", name="Enroll").click()
    expect(page.locator("#enroll-result .verdict")).to_have_text("Enrolled cam3 with 3 photos")
    employee = page.request.get(f"{server.url}/employees/cam3", headers={"X-API-Key": server.keys["admin"]}).json()
    assert [r["reference"] for r in employee["references"]] == [0, 1, 2]


def test_an_admin_manages_a_group_and_its_members(open_page, server, photos):
    """Create a group, add members by id (one unknown), page and search them, remove one, rename the group, see
    it on an employee's page, identify within it, and delete it from the list."""
    import httpx
    from playwright.sync_api import expect

    photo = photos.bytes("Serena_Williams", 1)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys["admin"]}, timeout=60) as api:
        for i in range(22):
            response = api.post("/enroll", data={"employee_id": f"grp-{i:02d}"},
                                files={"image": ("p.jpg", photo, "image/jpeg")})
            assert response.status_code == 201, response.text
    page = open_page()
    sign_in(page, server, "admin")
    page.locator("nav").get_by_role("button", name="Groups").click()
    create = page.locator("#group-create-form")
    create.get_by_label("Group id").fill("lab-3")
    create.get_by_label("Name (optional)").fill("Lab 3")
    create.get_by_role("button", name="Create group").click()
    expect(page.locator("#group-title")).to_have_text("Lab 3 (lab-3)")

    page.get_by_label("Add employees").fill(" ".join(f"grp-{i:02d}" for i in range(22)) + ", ghost")
    page.locator("#member-add-form").get_by_role("button", name="Add").click()
    expect(page.locator("#error")).to_contain_text("ghost")
    caption = page.locator("#members-caption")
    expect(caption).to_have_text("Members: 1–20 of 22")
    page.locator("#members-pager").get_by_role("button", name="Next").click()
    expect(caption).to_have_text("Members: 21–22 of 22")
    page.get_by_label("Search members by id or name").fill("grp-05")
    page.locator("#members-search-form").get_by_role("button", name="Search").click()
    expect(caption).to_have_text("Members matching “grp-05”: 1–1 of 1")
    page.get_by_role("button", name="Remove grp-05 from the group").click()
    expect(caption).to_have_text("Members matching “grp-05”: none")
    page.locator("#group-rename").fill("Lab three")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#group-title")).to_have_text("Lab three (lab-3)")
    screenshot(page, "console-group")

    page.goto(f"{server.url}/console#employee/grp-00")
    expect(page.locator("#employee-facts")).to_contain_text("lab-3")
    page.locator("#employee-facts").get_by_role("link", name="lab-3").click()
    expect(page.locator("#group-facts")).to_contain_text("21")

    page.locator("nav").get_by_role("button", name="Verify & identify").click()
    page.get_by_label("Who is this? (identify)").check()
    page.locator("#try-group").fill("lab-3")
    page.locator("#try-form input[type=file]").set_input_files(str(photos.path("Serena_Williams", 2)))
    page.locator("#try-form").get_by_role("button", name="Check").click()
    expect(page.locator("#try-result")).to_contain_text("Searched 21 employees of group lab-3.")

    page.locator("nav").get_by_role("button", name="Groups").click()
    row = page.locator("#groups-table tbody tr")
    expect(row.locator("td").nth(2)).to_have_text("21")
    page.get_by_role("button", name="Delete group lab-3").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#groups-caption")).to_have_text("Groups: none")
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.keys["admin"]}, timeout=60) as api:
        assert api.get("/employees", params={"q": "grp-"}).json()["total"] == 22, "the members stay enrolled"


@pytest.fixture(scope="module")
def door_browser(playwright, shared_data: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001
    """A Chromium whose webcam films the man of the liveness samples answering the challenge left, right, left
    (tests.bursts.door_film: real frames of his head turns, made into a Y4M film here)."""
    film = tmp_path_factory.mktemp("door") / "turns.y4m"
    door_film(shared_data, film)
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={film}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    yield browser
    browser.close()


# Attempts the man at the door gets, as a person would try again: the fake camera plays his film at its own pace,
# and on a loaded machine its frames can fall behind the door screen's prompts (the check then refuses the turn
# as unclear, rightly). Any other refusal fails the test at once.
ATTEMPTS = 3


# The one challenge the fake camera's film answers (a quarter of them). Not "left, right" as well: after his
# second return the film goes on into its third turn, and the camera starts the film before the door screen's
# first frame, so the last frames of a two-prompt burst can catch him turning again, which the turns check
# refuses. On an Intel Xeon every "left, right" burst of 6 was refused so, and a full CI run failed when three
# attempts in a row drew it.
FILMED = "left,right,left"


def start_the_filmed_challenge(page) -> None:  # noqa: ANN001 - playwright's Page
    """Start the door screen until its challenge is the one the fake camera's film answers (FILMED); any other
    is cancelled."""
    from playwright.sync_api import expect

    screen = page.locator("#door-screen")
    for _ in range(60):  # 60 misses in a row: 0.75^60, about 3e-8
        screen.evaluate("(node) => { delete node.dataset.prompts; }")
        page.get_by_role("button", name="Start").click()
        expect(screen).to_have_attribute("data-prompts", re.compile(r"^(left|right)"))
        if screen.get_attribute("data-prompts") == FILMED:
            return
        page.get_by_role("button", name="Cancel").click()
        expect(page.get_by_role("button", name="Start")).to_be_visible()
    pytest.fail(f"sixty challenges in a row were not {FILMED}")


def test_the_door_screen_lets_in_a_man_who_turns_his_head(door_browser, server, shared_data):
    """The door screen asks for a challenge, films the burst and identifies: the fake camera's man, enrolled
    from one of its frames, is let in (within ATTEMPTS tries)."""
    import httpx
    from playwright.sync_api import expect

    admin = {"X-API-Key": server.keys["admin"]}
    enrolled = httpx.post(f"{server.url}/enroll", params={"force": "true"}, headers=admin,
                          data={"employee_id": "door-man", "name": "The Man"},
                          files={"image": ("man.png", frontal_frame(shared_data, CAPPED), "image/png")})
    assert enrolled.status_code == 201, enrolled.text
    context = door_browser.new_context(viewport={"width": 900, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    outside = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
               else (outside.append(route.request.url), route.abort()))
    page.goto(f"{server.url}/console/door")
    page.get_by_label("API key (verify scope)").fill(server.keys["verify"])
    page.get_by_role("button", name="Open the door screen").click()
    answer = page.locator("#door-answer")
    for attempt in range(1, ATTEMPTS + 1):
        start_the_filmed_challenge(page)
        expect(page.locator("#door-prompt")).to_have_text("Turn your head to your left ←")
        expect(answer).to_have_class(re.compile("granted|refused"), timeout=60_000)
        if answer.text_content() != "The head turn was not clear. Please try again, following the prompts.":
            break
        assert attempt < ATTEMPTS, f"{ATTEMPTS} attempts in a row were refused as unclear head turns"
        answer.evaluate("(node) => { node.className = 'answer'; }")
    expect(answer).to_have_text("Welcome, The Man")
    expect(answer).to_have_class(re.compile("granted"))
    rows = httpx.get(f"{server.url}/audit", headers=admin, params={"action": "identify"}).json()["items"]
    assert (rows[0]["decision"], rows[0]["employee_id"], rows[0]["liveness"]) == ("match", "door-man", "passed")
    context.close()
    assert not outside, f"the door screen tried to reach other hosts: {outside}"
