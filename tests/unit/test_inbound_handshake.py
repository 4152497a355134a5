"""The CloudEvents abuse-protection handshake of `OPTIONS /api/inbound` (`sms_http.event_grid`)."""

from __future__ import annotations

import pytest

from sms_core.errors import RequestInvalid
from sms_http.event_grid import abuse_protection_handshake
from sms_http.problems import problem_for


@pytest.mark.parametrize("origin", ["eventgrid.azure.net", "EventGrid.Azure.NET",
                                    "eventemitter.example.com", "localhost", "10.0.0.1"])
def test_a_host_name_is_allowed_back(origin: str) -> None:
    answer = abuse_protection_handshake({"webhook-request-origin": origin})
    assert answer.status == 200
    assert answer.headers["WebHook-Allowed-Origin"] == origin
    assert answer.headers["WebHook-Allowed-Rate"] == "*"


@pytest.mark.parametrize("origin", [
    "eventgrid.azure.net\r\n X-Injected: 1",  # a folded header, unfolded by the server
    "eventgrid.azure.net\n", "evil\rnet", "a b.example", "eventgrid.azure.net\x00",
    "eventgrid\u00e9.net", "-bad.example", "bad-.example", "a..b", "x" * 64 + ".example",
    ("a" * 60 + ".") * 5, "https://eventgrid.azure.net", "*", " "],
    ids=lambda v: repr(v)[:30])
def test_an_origin_that_is_not_a_host_name_is_a_400_problem_naming_the_header(
        origin: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        abuse_protection_handshake({"WebHook-Request-Origin": origin})
    assert [e.field for e in info.value.errors] == ["WebHook-Request-Origin"]
    problem = problem_for(info.value)
    assert problem.status == 400 and problem.body["errors"][0]["field"] == (
        "WebHook-Request-Origin")


def test_a_missing_origin_is_a_400_problem_naming_the_header() -> None:
    with pytest.raises(RequestInvalid) as info:
        abuse_protection_handshake({})
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("WebHook-Request-Origin", "required header")]
