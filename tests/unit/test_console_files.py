"""The console's files: only static/'s, with their types and the security and cache headers."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from console.blueprint import CONTENT_SECURITY_POLICY, serve


def _get(path: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    req = func.HttpRequest("GET", f"http://127.0.0.1/api/console/{path}", headers=headers or {},
                           body=b"", route_params={"path": path})
    return serve(req, path)


@pytest.mark.parametrize(("path", "content_type"), [
    ("index.html", "text/html"),
    ("app.js", "text/javascript"),
    ("pages/campaigns.js", "text/javascript"),
    ("console.css", "text/css"),
])
def test_a_shipped_file_has_its_type_and_the_security_headers(path: str,
                                                              content_type: str) -> None:
    r = _get(path)
    assert r.status_code == 200
    assert (r.mimetype, r.charset) == (content_type, "utf-8")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.get_body()


def test_the_policy_allows_no_inline_script_or_style_and_no_framing() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_a_current_copy_is_a_304() -> None:
    etag = _get("app.js").headers["ETag"]
    r = _get("app.js", {"If-None-Match": etag})
    assert r.status_code == 304
    assert r.get_body() == b""


@pytest.mark.parametrize("path", [
    "../blueprint.py", "pages/../../blueprint.py", "..%2Fblueprint.py", "/etc/passwd",
    "..\\blueprint.py", ".hidden", "pages/.x.js", "nothing.js", "pages", "", "index.html\x00",
    "../../function_app.py", "README.md",
])
def test_anything_else_is_a_404_problem(path: str) -> None:
    r = _get(path)
    assert r.status_code == 404
    assert r.mimetype == "application/problem+json"
    assert json.loads(r.get_body())["status"] == 404
    assert r.headers["X-Content-Type-Options"] == "nosniff"
