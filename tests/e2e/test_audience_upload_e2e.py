"""A large audience over HTTP on the local stack: the file sent in parts cut anywhere (inside a
UTF-8 character too), imported by the host's queue trigger in the background, followed with
GET until ready, then used by a campaign; the bad requests answered as problem+json."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Stack
from tests.e2e.test_send_e2e import conforms
from tests.numbers import unique_number


def send_parts(stack: Stack, data: bytes, size: int) -> tuple[str, int]:
    r = stack.api.post("/audiences/uploads")
    assert r.status_code == 201, r.text
    conforms(r.json(), "Upload")
    upload_id = r.json()["id"]
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    for n, part in enumerate(parts):
        answer = stack.api.put(f"/audiences/uploads/{upload_id}/parts/{n}", content=part,
                               headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 200, answer.text
        conforms(answer.json(), "UploadPart")
        assert answer.json()["bytes"] == len(part)
    return upload_id, len(parts)


def audience(stack: Stack, audience_id: str) -> dict[str, Any]:
    r = stack.api.get(f"/audiences/{audience_id}")
    assert r.status_code == 200, r.text
    conforms(r.json(), "Audience")
    return dict(r.json())


def test_a_file_sent_in_parts_is_imported_and_sends_a_campaign(stack: Stack) -> None:
    people = [unique_number() for _ in range(300)]
    text = "phone,first_name,city\n" + "".join(
        f"{p},Zoë{i},Münster\n" for i, p in enumerate(people))
    data = text.encode()
    upload_id, parts = send_parts(stack, data, 1001)  # cuts inside ë and ü now and then
    r = stack.api.post("/audiences", json={"name": "file", "uploadId": upload_id,
                                           "parts": parts})
    assert r.status_code == 202, r.text
    conforms(r.json(), "Audience")
    assert r.json()["status"] == "importing"
    audience_id = r.json()["id"]
    done = stack.wait_for(lambda: (lambda a: a if a["status"] != "importing" else None)(
        audience(stack, audience_id)), 60, "the import to end")
    assert (done["status"], done["size"], done["columns"]) == ("ready", 300,
                                                               ["first_name", "city"])
    assert done["progress"] == {"bytesRead": len(data), "totalBytes": len(data)}
    counted = stack.api.get(f"/audiences/{audience_id}/count",
                            params={"filter": "first_name = 'Zoë7'"}).json()
    assert counted == {"members": 300, "matching": 1}

    prepared = stack.api.post("/campaigns", json={
        "name": "from a file", "template": "Hallo {{first_name}} in {{city}}",
        "audience": {"audienceId": audience_id, "filter": "first_name = 'Zoë7'"}})
    assert prepared.status_code == 201, prepared.text
    assert prepared.json()["preview"]["recipients"]["valid"] == 1
    sent = stack.api.post(f"/campaigns/{prepared.json()['id']}/send",
                          json={"confirmationToken": prepared.json()["confirmationToken"]})
    assert sent.status_code == 202, sent.text
    stack.wait_for(lambda: stack.emulator.state.inbox(people[7]), 60, "the text at the handset")
    assert [m["message"] for m in stack.emulator.state.inbox(people[7])] == [
        "Hallo Zoë7 in Münster"]


def test_a_bad_line_fails_the_import_and_the_campaign_is_a_409(stack: Stack) -> None:
    data = ("phone,name\n" + "".join(f"{unique_number()},P{i}\n" for i in range(20))
            + "+14255550100,one,two\n").encode()
    upload_id, parts = send_parts(stack, data, 64)
    r = stack.api.post("/audiences", json={"name": "broken file", "uploadId": upload_id,
                                           "parts": parts})
    assert r.status_code == 202, r.text
    failed = stack.wait_for(lambda: (lambda a: a if a["status"] == "failed" else None)(
        audience(stack, r.json()["id"])), 60, "the import to fail")
    assert failed["error"]["line"] == 22
    assert "expected 2 fields" in failed["error"]["detail"]
    campaign = stack.api.post("/campaigns", json={
        "name": "no", "template": "Hi", "audience": {"audienceId": r.json()["id"]}})
    assert campaign.status_code == 409
    assert campaign.headers["content-type"].startswith("application/problem+json")


def test_bad_upload_requests_are_problems_naming_the_field(stack: Stack) -> None:
    upload_id, _ = send_parts(stack, b"phone\n+14255550100\n", 100)
    gap = stack.api.post("/audiences", json={"name": "gap", "uploadId": upload_id, "parts": 2})
    assert gap.status_code == 400
    assert gap.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in gap.json()["errors"]] == ["parts"]
    no_parts = stack.api.post("/audiences", json={"name": "x", "uploadId": upload_id})
    assert no_parts.status_code == 400
    for n, body, field in (("abc", b"x", "n"), ("0", b"", "body")):
        r = stack.api.put(f"/audiences/uploads/{upload_id}/parts/{n}", content=body)
        assert r.status_code == 400, (n, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]
    unknown = stack.api.put("/audiences/uploads/unothere/parts/0", content=b"x")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
