"""How routing answers a request it cannot serve as sent: never a redirect built from the client's Host header,
405 with the Allow header RFC 9110 requires, and the error body throughout."""

from __future__ import annotations

import pytest

from app.services.keys import create_key


@pytest.fixture
def keyed(make_client):
    client = make_client(auth=True)
    with client.app.state.runtime.sessions() as session:
        client.headers["X-API-Key"] = create_key(session, "admin")[0]
    return client


def test_a_trailing_slash_is_not_redirected_to_the_host_the_client_names(keyed):
    for path in ("/employees/", "/console/", "/audit/", "/docs/", "/enroll/check/", "/me/"):
        for headers in ({"Host": "evil.example"}, {"Host": "evil.example", "X-API-Key": ""}):
            response = keyed.get(path, headers=headers, follow_redirects=False)
            assert "location" not in response.headers, (path, response.headers)
            assert response.status_code in (401, 404) and "error" in response.json(), path


def test_a_method_a_route_does_not_take_is_405_with_allow(keyed):
    for method, path, allowed in (("TRACE", "/verify", {"POST"}), ("PUT", "/employees", {"GET"}),
                                  ("POST", "/healthz", {"GET"})):
        response = keyed.request(method, path)
        assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
        assert set(response.headers["allow"].replace(" ", "").split(",")) >= allowed, response.headers


def test_head_is_answered_wherever_get_is_with_get_s_headers_and_no_body(keyed):
    """RFC 9110 asks every general-purpose server for HEAD wherever it serves GET; load balancers probe /healthz
    with it. It was 405 on every path."""
    for path in ("/healthz", "/readyz", "/employees", "/console", "/console/assets/console.js", "/openapi.json"):
        got, head = keyed.get(path), keyed.head(path)
        assert (head.status_code, got.status_code) == (200, 200), path
        assert head.content == b"" and head.headers["content-length"] == got.headers["content-length"], path
        assert head.headers["content-type"] == got.headers["content-type"], path
    refused = keyed.head("/verify")  # no GET there: no HEAD either
    assert refused.status_code == 405 and refused.content == b"" and refused.headers["allow"] == "POST"
    assert keyed.put("/employees").headers["allow"] == "GET, HEAD"
    assert keyed.head("/employees", headers={"X-API-Key": ""}).status_code == 401, "HEAD is no way around a key"
