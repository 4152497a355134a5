"""A campaign for a large saved audience over HTTP on the local stack: POST /api/campaigns
answers 202 `preparing`, the host's queue trigger prepares it in parallel chunks, GET follows
its progress to `prepared` with the exact preview, and the campaign sends. The stack prepares
more than PREPARE_INLINE_MAX members in the background, PREPARE_CHUNK a job (tests/stack.py)."""

from __future__ import annotations

from tests.e2e.conftest import Stack
from tests.e2e.test_audience_upload_e2e import audience, send_parts
from tests.e2e.test_campaigns_e2e import campaign
from tests.e2e.test_send_e2e import conforms
from tests.numbers import unique_number
from tests.stack import PREPARE_CHUNK, PREPARE_INLINE_MAX

SIZE = 1_040  # three chunk jobs: rows 0-399, 400-799, 800-1039
VIP = [100, 101, *range(200, 230), 900, 901]


def test_a_large_audience_is_prepared_in_the_background_and_sends(stack: Stack) -> None:
    assert PREPARE_INLINE_MAX < SIZE and -(-SIZE // PREPARE_CHUNK) == 3
    people = [unique_number() for _ in range(SIZE)]
    people[900], people[901] = people[100], people[101]  # the same people, two chunks apart
    people[7] = people[507] = "12345"  # not numbers, in two chunks
    text = "phone,name,group\n" + "".join(
        f"{p},P{i},{'vip' if i in VIP else 'std'}\n" for i, p in enumerate(people))
    upload_id, parts = send_parts(stack, text.encode(), 10_000)
    assert parts > 2
    r = stack.api.post("/audiences", json={"name": "big", "uploadId": upload_id,
                                           "parts": parts})
    assert r.status_code == 202, r.text
    audience_id = r.json()["id"]
    stack.wait_for(lambda: audience(stack, audience_id)["status"] == "ready", 120,
                   "the import to end")

    whole = stack.api.post("/campaigns", json={
        "name": "everyone", "template": "Hi {{name}}", "audience": {"audienceId": audience_id}})
    assert whole.status_code == 202, whole.text
    conforms(whole.json(), "PreparedCampaign")
    assert whole.json()["status"] == "preparing" and whole.json()["preview"] is None
    assert whole.json()["preparation"]["rowsTotal"] == SIZE
    done = stack.wait_for(lambda: (lambda c: c if c["status"] != "preparing" else None)(
        campaign(stack, whole.json()["id"])), 120, "the preparation to end")
    assert done["status"] == "prepared"
    assert done["preview"]["recipients"] == {"total": SIZE, "valid": SIZE - 4, "invalid": 2,
                                             "duplicates": 2, "optedOut": 0, "deferred": 0}
    assert [(r["index"], r["to"]) for r in done["preview"]["invalidRows"]] == [
        (7, "12345"), (507, "12345")]
    assert done["preparation"]["rowsRead"] == SIZE

    vip = stack.api.post("/campaigns", json={
        "name": "vip", "template": "Hi {{name}}",
        "audience": {"audienceId": audience_id, "filter": "group = 'vip'"}})
    assert vip.status_code == 202, vip.text
    ready = stack.wait_for(lambda: (lambda c: c if c["status"] != "preparing" else None)(
        campaign(stack, vip.json()["id"])), 120, "the preparation to end")
    assert ready["preview"]["recipients"]["valid"] == len(VIP) - 2
    assert ready["preview"]["samples"][0]["message"] == "Hi P100"
    sent = stack.api.post(f"/campaigns/{vip.json()['id']}/send",
                          json={"confirmationToken": vip.json()["confirmationToken"]})
    assert sent.status_code == 202, sent.text
    for i in VIP[:-2]:
        stack.wait_for(lambda i=i: stack.emulator.state.inbox(people[i]), 60,
                       "the text at the handset")
    for i in VIP[:-2]:
        assert [m["message"] for m in stack.emulator.state.inbox(people[i])] == [f"Hi P{i}"]
