"""The web console (/console, and its door screen /console/door): plain HTML, CSS and JavaScript in app/console,
served by the app itself (no build step, nothing from a CDN), and GET /me, which tells the console what the
signed-in key may do.

The console is a client of the documented API and nothing more: every action is an API call made with the
user's key, and the server checks each one as it would any other client's. Its page is public (it holds no
data); what it shows, it fetches.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

from app.api.deps import AnyCaller, RuntimeDep
from app.api.guard import CONSOLE
from app.api.routes.faces import AUTH_ERRORS
from app.api.schemas import MeOut

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
CONSOLE_ASSETS = CONSOLE + "/assets"
DOOR = CONSOLE + "/door"
router = APIRouter(tags=["console"])


@router.get("/me", response_model=MeOut, responses=AUTH_ERRORS)
def me(runtime: RuntimeDep, caller: AnyCaller) -> MeOut:
    """The presented key: its id and scope (any valid key may ask). The console asks at sign-in, to show only
    what the key may do; the server checks every request anyway. With keys off, the scope is admin."""
    if not runtime.settings.keys.required:
        return MeOut(auth=False, key_id=None, scope="admin")
    return MeOut(auth=True, key_id=caller.key_id, scope=caller.scope)


@router.get(CONSOLE, include_in_schema=False)
def console() -> FileResponse:
    """The console's page; its security headers come from app.api.pages."""
    return FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(DOOR, include_in_schema=False)
def door() -> FileResponse:
    """The door screen: a tablet at the door answers a head-turn challenge and identifies (a verify key's page);
    its security headers are the console's."""
    return FileResponse(CONSOLE_DIR / "door.html", headers={"Cache-Control": "no-cache"})


def mount_assets(app: FastAPI) -> None:
    app.mount(CONSOLE_ASSETS, StaticFiles(directory=CONSOLE_DIR / "assets"), name="console-assets")
