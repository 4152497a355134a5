"""Campaigns end to end: HTTP on the local host, the real queues and timers, the ACS emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.deadlines import scaled
from tests.e2e.conftest import SENDER, Stack
from tests.e2e.test_send_e2e import conforms
from tests.numbers import unique_number


def inbox(stack: Stack, number: str) -> list[str]:
    return [m["message"] for m in stack.emulator.state.inbox(number)]


def prepare(stack: Stack, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "e2e campaign")
    r = stack.api.post("/campaigns", json=body)
    assert r.status_code == 201, r.text
    conforms(r.json(), "PreparedCampaign")
    return dict(r.json())


def confirm(stack: Stack, campaign: dict[str, Any]) -> dict[str, Any]:
    r = stack.api.post(f"/campaigns/{campaign['id']}/send",
                       json={"confirmationToken": campaign["confirmationToken"]})
    assert r.status_code == 202, r.text
    conforms(r.json(), "Campaign")
    return dict(r.json())


def campaign(stack: Stack, campaign_id: str) -> dict[str, Any]:
    r = stack.api.get(f"/campaigns/{campaign_id}")
    assert r.status_code == 200, r.text
    conforms(r.json(), "Campaign")
    return dict(r.json())


def test_thousand_recipients_exact_preview_then_one_message_each(stack: Stack) -> None:
    valid = [unique_number() for _ in range(930)]
    opted = valid[:15]
    r = stack.api.post("/optouts/add", json={"from": SENDER,
                                             "recipients": [{"to": n} for n in opted]})
    assert r.status_code == 200, r.text
    rows = [{"to": n, "vars": {"name": f"Person {i}"}} for i, n in enumerate(valid)]
    rows += [{"to": valid[100 + i], "vars": {"name": "dup"}} for i in range(30)]
    rows += [{"to": f"+1555{i:03d}", "vars": {"name": "bad"}} for i in range(20)]
    rows += [{"to": unique_number()} for _ in range(5)]  # no `name`: missing variable
    assert len(rows) == 985
    rows += [{"to": valid[200 + i], "vars": {"name": "dup"}} for i in range(15)]
    prepared = prepare(stack, template="Hi {{name}}, your code is ready.",
                       audience={"recipients": rows})
    counts = prepared["preview"]["recipients"]
    assert counts == {"total": 1000, "valid": 915, "invalid": 25, "duplicates": 45,
                      "optedOut": 15, "deferred": 0}
    assert len(prepared["preview"]["invalidRows"]) == 25
    assert prepared["preview"]["segments"]["total"] == 915
    assert all(inbox(stack, n) == [] for n in valid)  # nothing reaches ACS before confirming

    wrong = stack.api.post(f"/campaigns/{prepared['id']}/send",
                           json={"confirmationToken": "not-the-token"})
    assert wrong.status_code == 409
    assert wrong.headers["content-type"].startswith("application/problem+json")

    confirm(stack, prepared)
    to_send = valid[15:]
    stack.wait_for(lambda: all(inbox(stack, n) for n in to_send), 120,
                   "every valid recipient to get the campaign")
    for i, n in enumerate(valid):
        assert inbox(stack, n) == ([] if n in opted else [f"Hi Person {i}, your code is ready."])
    done = stack.wait_for(lambda: (lambda c: c if c["status"] == "completed" else None)(
        campaign(stack, prepared["id"])), 60, "the campaign to complete")
    assert done["counts"]["sent"] + done["counts"]["delivered"] == 915
    listed = stack.api.get("/campaigns", params={"limit": 200}).json()
    conforms(listed, "CampaignList")


def test_quiet_hours_defer_and_cancel_stops_the_rest(stack: Stack) -> None:
    us = [unique_number() for _ in range(3)]
    nl = [f"+3162000000{i}" for i in range(3)]  # Dutch mobiles: Europe/Amsterdam
    local = datetime.now(ZoneInfo("Europe/Amsterdam"))
    quiet = {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
             "end": (local + timedelta(hours=2)).strftime("%H:%M")}
    prepared = prepare(stack, template="Evening offer",
                       audience={"recipients": [{"to": n} for n in us + nl]}, quietHours=quiet)
    assert prepared["preview"]["recipients"]["deferred"] == 3
    confirm(stack, prepared)
    stack.wait_for(lambda: all(inbox(stack, n) for n in us), 60, "the US recipients")
    view = stack.wait_for(lambda: (lambda c: c if c["counts"]["queued"] == 3 else None)(
        campaign(stack, prepared["id"])), 30, "the NL recipients to wait for the morning")
    assert view["status"] == "sending"
    paused = stack.api.post(f"/campaigns/{prepared['id']}/pause")
    assert paused.status_code == 404, paused.text  # only send and cancel are actions
    r = stack.api.post(f"/campaigns/{prepared['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled" and r.json()["counts"]["canceled"] == 3
    assert all(inbox(stack, n) == [] for n in nl)
    again = stack.api.post(f"/campaigns/{prepared['id']}/send",
                           json={"confirmationToken": prepared["confirmationToken"]})
    assert again.status_code == 409


def test_scheduled_campaign_fires_at_send_at(stack: Stack) -> None:
    person = unique_number()
    # Ahead by more than preparing and confirming take, so the run is still scheduled then.
    at = datetime.now(UTC) + timedelta(seconds=scaled(4))
    prepared = prepare(stack, template="Your appointment is tomorrow",
                       audience={"recipients": [{"to": person}]},
                       schedule={"sendAt": at.isoformat()})
    assert confirm(stack, prepared)["status"] == "scheduled"
    assert inbox(stack, person) == []
    stack.wait_for(lambda: inbox(stack, person), 60, "the scheduled run to fire")
    assert datetime.now(UTC) >= at
    stack.wait_for(lambda: campaign(stack, prepared["id"])["status"] == "completed", 30,
                   "the scheduled campaign to complete")


def test_saved_audience_and_template_over_http(stack: Stack) -> None:
    ann, bo = unique_number(), unique_number()
    bad = stack.api.post("/audiences", params={"name": "broken"},
                         content=f"phone,city\n{ann},Seattle\n{bo},Portland,extra\n",
                         headers={"Content-Type": "text/csv"})
    assert bad.status_code == 400 and "line 3" in bad.json()["detail"]
    r = stack.api.post("/audiences", params={"name": "customers"},
                       content=f"phone,city,first_name\n{ann},Seattle,Ann\n{bo},Portland,Bo\n",
                       headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    conforms(r.json(), "Audience")
    audience_id = r.json()["id"]
    t = stack.api.post("/templates", json={"name": "hello", "text": "Hello {{first_name}}!"})
    assert t.status_code == 201, t.text
    conforms(t.json(), "Template")
    broken = stack.api.post("/campaigns", json={
        "name": "x", "templateId": t.json()["id"],
        "audience": {"audienceId": audience_id, "filter": "city = 'Seattle' and"}})
    assert broken.status_code == 400
    assert broken.json()["errors"][0]["field"] == "audience.filter"
    prepared = prepare(stack, templateId=t.json()["id"],
                       audience={"audienceId": audience_id, "filter": "city = 'seattle'"})
    assert prepared["preview"]["samples"] == [{"to": ann, "message": "Hello Ann!",
                                               "segments": 1, "encoding": "GSM-7"}]
    confirm(stack, prepared)
    stack.wait_for(lambda: inbox(stack, ann), 60, "the filtered audience to get it")
    assert inbox(stack, bo) == []
    assert stack.api.delete(f"/templates/{t.json()['id']}").status_code == 204
    assert stack.api.get(f"/templates/{t.json()['id']}").status_code == 404
    assert stack.api.delete(f"/audiences/{audience_id}").status_code == 204
    assert stack.api.get(f"/audiences/{audience_id}").status_code == 404


def test_csv_campaign_upload_names_the_bad_line(stack: Stack) -> None:
    ann = unique_number()
    r = stack.api.post("/campaigns", params={"name": "csv", "template": "Hi {{name}}"},
                       content=f"phone,name\n{ann},Ann\n{ann},Ann,again\n",
                       headers={"Content-Type": "text/csv"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "audience.csv"
    assert r.json()["errors"][0]["message"].startswith("line 3:")
    r = stack.api.post("/campaigns", params={"name": "csv", "template": "Hi {{name}}"},
                       content=f"phone,name\n{ann},Ann\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    conforms(r.json(), "PreparedCampaign")
    confirm(stack, r.json())
    stack.wait_for(lambda: inbox(stack, ann) == ["Hi Ann"], 60, "the uploaded audience")


def test_a_campaign_prepared_earlier_is_sent_after_a_review(stack: Stack) -> None:
    """The token of the preparation is gone (another session): a review gives a new one."""
    to = unique_number()
    prepared = prepare(stack, template="Hi {{name}}, see you soon.",
                       audience={"recipients": [{"to": to, "vars": {"name": "Ann"}}]})
    r = stack.api.post(f"/campaigns/{prepared['id']}/review")
    assert r.status_code == 200, r.text
    conforms(r.json(), "PreparedCampaign")
    reviewed = dict(r.json())
    assert reviewed["preview"] == prepared["preview"]
    stale = stack.api.post(f"/campaigns/{prepared['id']}/send",
                           json={"confirmationToken": prepared["confirmationToken"]})
    assert stale.status_code == 409
    assert "review" in stale.json()["detail"]
    assert inbox(stack, to) == []
    confirm(stack, reviewed)
    stack.wait_for(lambda: inbox(stack, to), 60, "the reviewed campaign at the handset")
    assert inbox(stack, to) == ["Hi Ann, see you soon."]
    again = stack.api.post(f"/campaigns/{prepared['id']}/review")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    missing = stack.api.post("/campaigns/cnope/review")
    assert missing.status_code == 404
