"""Analytics maintained as events happen: sends, reports, inbound replies and opt-outs, exact
after redeliveries (real Azurite, SDK and emulator)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from localdev.acs_emulator import AcsEmulator, Outcome
from sms_core.bootstrap import Services
from sms_core.use_cases.analytics import analytics_report
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.messages import get_message
from sms_http.event_grid import inbound_post
from sms_http.requests import analytics_query
from tests.integration.conftest import make_services, new_number, take_jobs
from tests.integration.flows import handle_delivery_reports, run_all_jobs, send
from tests.integration.test_delivery_reports import acs_report
from tests.integration.test_inbound import sms_event


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def figures(services: Services, **params: str) -> dict[str, object]:
    report = analytics_report(services.analytics,
                              analytics_query({"from": today(), "to": today(), **params}))
    return dict(report.totals)


def test_figures_follow_sends_reports_replies_and_opt_outs(
        azurite_connection_string: str, emulator: AcsEmulator) -> None:
    sender = f"+1833555{uuid.uuid4().int % 9000 + 1000:04d}"
    services = make_services(azurite_connection_string, emulator, SMS_DEFAULT_FROM=sender)
    tag = f"campaign-{uuid.uuid4().hex[:6]}"
    a, b, c, d = (new_number() for _ in range(4))
    emulator.state.set_outcome(b, Outcome.from_json({
        "deliveryStatus": "Failed",
        "deliveryStatusDetails": "4010: Message was blocked due to the toll-free number not "
                                 "being verified."}))
    services.optouts.opt_out(sender, d, source="api")
    resp = send(services, to=[a, b, c, d, "+1555"], message="Hello é€", tag=tag)
    assert [m.status for m in resp.messages][-2:] == ["blocked", "rejected"]
    jobs = take_jobs(services)
    for job in jobs:
        dispatch(services, job)
        dispatch(services, job, attempt=2)  # a redelivered job counts nothing twice
    run_all_jobs(services)
    by_id = {m.to: get_message(services.messages, m.id) for m in resp.messages[:3]}
    for number, status, details in ((a, "Delivered", "No error."),
                                    (b, "Failed", "4010: Message was blocked due to the "
                                                  "toll-free number not being verified.")):
        report = acs_report(emulator, by_id[number], status, details)
        handle_delivery_reports(services, report)
        handle_delivery_reports(services, report)  # redelivered report
    reply = sms_event(a, sender, "Thanks!")
    inbound_post(services, reply)
    inbound_post(services, reply)  # Event Grid redelivery
    inbound_post(services, sms_event(a, sender, "One more thing"))  # same message: 1 response
    inbound_post(services, sms_event(c, sender, "STOP"))
    run_all_jobs(services)  # sends the STOP confirmation

    totals = figures(services, sender=sender, tag=tag)
    assert {k: totals[k] for k in ("sent", "delivered", "failed", "blocked", "rejected",
                                   "unverifiedTollFree", "responses")} == {
        "sent": 3, "delivered": 1, "failed": 1, "blocked": 1, "rejected": 1,
        "unverifiedTollFree": 1, "responses": 2}
    assert totals["segments"] == 3 * by_id[a].segments
    assert totals["deliveryRate"] == 0.5 and totals["responseRate"] == round(2 / 3, 4)
    everything = figures(services, sender=sender)
    assert everything["inbound"] == 3 and everything["optOuts"] == 1
    # the STOP confirmation is a message too, sent untagged
    assert everything["sent"] == 4


def test_analytics_query_validates_its_parameters(services: Services) -> None:
    import pytest

    from sms_core.errors import RequestInvalid

    for params, field in (({"to": today()}, "from"), ({"from": "yesterday", "to": today()},
                                                     "from"),
                          ({"from": today(), "to": (datetime.now(UTC) + timedelta(days=400))
                            .date().isoformat()}, "to"),
                          ({"from": today(), "to": today(), "sender": "nobody!"}, "sender")):
        with pytest.raises(RequestInvalid) as info:
            analytics_query(params)
        assert field in [e.field for e in info.value.errors]


def test_four_parallel_ingesters_keep_figures_exact(
        azurite_connection_string: str, emulator: AcsEmulator) -> None:
    """Four report consumers (instances) see every report twice, in any order."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    sender = f"+1844555{uuid.uuid4().int % 9000 + 1000:04d}"
    services = make_services(azurite_connection_string, emulator, SMS_DEFAULT_FROM=sender)
    numbers = [new_number() for _ in range(40)]
    resp = send(services, to=numbers, message="Parallel", tag="parallel")
    run_all_jobs(services)
    reports = []
    for i, entry in enumerate(resp.messages):
        status, details = (("Failed", "4006: unreachable") if i % 4 == 0
                           else ("Delivered", "No error."))
        reports.append(acs_report(emulator, get_message(services.messages, entry.id), status,
                                  details))
    work = reports * 2
    random.Random(7).shuffle(work)
    instances = [make_services(azurite_connection_string, emulator, SMS_DEFAULT_FROM=sender)
                 for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: [handle_delivery_reports(instances[i], r)
                                 for r in work[i::4]], range(4)))
    totals = figures(services, sender=sender, tag="parallel")
    assert (totals["sent"], totals["delivered"], totals["failed"]) == (40, 30, 10)
    assert totals["deliveryRate"] == 0.75
