def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_model_database_and_index(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["model_id"].startswith("sha256:")
    assert body["templates"] == 0 and body["stale_templates"] == 0
    assert body["device"] in ("cpu", "cuda", "cuda:0")


def test_openapi_docs_describe_every_endpoint(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/enroll", "/verify", "/identify", "/employees", "/employees/{employee_id}", "/healthz", "/readyz"):
        assert path in paths
    enroll = paths["/enroll"]["post"]
    assert {"201", "409", "413", "422"} <= set(enroll["responses"])


def test_the_docs_pages_need_nothing_from_the_internet(make_client):
    """Swagger UI and ReDoc load their scripts and styles from the app (door networks are often offline), and
    those are public, like the pages, even with keys on."""
    import re

    client = make_client(auth=True)
    for page, kinds in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)\s*[=:]\s*['"]([^'"]+)['"]""", html) + re.findall(r"url:\s*'([^']+)'", html)
        assert urls and not [u for u in urls if "//" in u], urls  # nothing absolute: no CDN, no fonts
        for name in kinds:
            asset = next(u for u in urls if u.endswith(name))
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 10_000, asset
    assert client.get("/docs-assets/nope.js").status_code == 404


def test_unknown_routes_use_the_error_body(client):
    response = client.get("/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_readyz_is_503_when_the_database_is_gone(client):
    from sqlalchemy import create_engine

    from app.gallery.db import make_sessionmaker

    runtime = client.app.state.runtime
    healthy, sessions = runtime.engine, runtime.sessions
    runtime.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    runtime.sessions = make_sessionmaker(runtime.engine)
    try:
        response = client.get("/readyz")
        assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
        assert client.get("/healthz").status_code == 200
        listing = client.get("/employees")  # any request that needs the database
        assert listing.status_code == 503 and listing.json()["error"]["code"] == "not_ready"
    finally:
        runtime.engine.dispose()
        runtime.engine, runtime.sessions = healthy, sessions
