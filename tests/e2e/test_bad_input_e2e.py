"""Bad input over HTTP on the running stack: a 4xx application/problem+json naming the field,
never a 500 (issue 12's inputs)."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import FUNCTION_KEY, Stack

DEEP = "[" * 10_000
JSON_ROUTES = ["/messages", "/campaigns", "/audiences", "/templates", "/optouts/add",
               "/campaigns/cnope/send", "/inbound"]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"]
    return body


def fields(r: httpx.Response) -> list[str]:
    return [e["field"] for e in problem(r, 400)["errors"]]


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_deeply_nested_json_is_a_400_naming_the_body(stack: Stack, path: str) -> None:
    r = stack.api.post(path, content=DEEP, headers={"content-type": "application/json"})
    assert fields(r) == ["body"]


@pytest.mark.parametrize(("body", "field"), [
    ({"to": "+14255550123", "message": "hi", "sendAt": "0001-01-01T00:00:00Z"}, "sendAt"),
    ({"to": "+14255550123", "message": "\u200b\u200d"}, "message"),
    ({"to": "+14255550123", "message": "\x00"}, "message"),
])
def test_a_message_that_cannot_be_sent_is_a_400_naming_the_field(
        stack: Stack, body: dict[str, Any], field: str) -> None:
    assert fields(stack.api.post("/messages", json=body)) == [field]


def test_a_lone_surrogate_is_a_400_naming_message(stack: Stack) -> None:
    r = stack.api.post("/messages", content=b'{"to": "+14255550123", "message": "\\ud800"}',
                       headers={"content-type": "application/json"})
    assert fields(r) == ["message"]


def test_a_folded_webhook_origin_is_a_400_naming_the_header(stack: Stack) -> None:
    url = httpx.URL(str(stack.api.base_url))
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(f"OPTIONS /api/inbound?code={FUNCTION_KEY} HTTP/1.1\r\nHost: local\r\n"
                     "WebHook-Request-Origin: eventgrid.azure.net\r\n X-Injected: 1\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request", answer[:300]
    assert b"application/problem+json" in head and b"X-Injected" not in head
    assert [e["field"] for e in json.loads(body)["errors"]] == ["WebHook-Request-Origin"]


def test_a_malformed_paging_cursor_is_a_400_naming_it(stack: Stack) -> None:
    assert fields(stack.api.get("/campaigns", params={"after": "garbage"})) == ["after"]
    assert fields(stack.api.get("/conversations/+14255550123",
                                params={"continuationToken": "e30="})) == ["continuationToken"]


def test_a_missing_or_wrong_key_is_a_401_problem_naming_where_the_key_goes(
        stack: Stack) -> None:
    for r in (stack.anonymous.get("/campaigns"),
              stack.anonymous.get("/campaigns", headers={"x-functions-key": "wrong"})):
        detail = problem(r, 401)["detail"]
        assert "x-functions-key" in detail and "code" in detail


def test_pydantic_wording_does_not_leak(stack: Stack) -> None:
    r = stack.api.post("/optouts/add", json={"from": "+18005550100",
                                             "recipients": [{"to": "+14255550123"}] * 101})
    assert problem(r, 400)["errors"] == [{"field": "recipients",
                                          "message": "at most 100 items (got 101)"}]
