"""`sms_http.handle`: one log line per HTTP request, and a 500 whose traceback names the method
and path."""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest

from sms_core.errors import NotFound, StorageUnavailable
from sms_core.logs import concern
from sms_http import handle, json_response
from sms_http.request_log import caller_ids, route_and_path

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def request(method: str, url: str, route_params: dict[str, str] | None = None,
            headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method, url, headers=headers or {}, body=b"",
                            route_params=route_params or {})


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sms_http.request_log"]


def test_every_request_is_one_line_with_route_status_duration_and_ids(
        caplog: pytest.LogCaptureFixture) -> None:
    req = request("POST", "http://localhost/api/messages?code=secret-key&to=%2B14255550123",
                  headers={"x-correlation-id": "order-42",
                           "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})

    def run() -> func.HttpResponse:
        concern(batch="20260101000000abcdef123456")
        return json_response({"messages": []}, status=202)

    with caplog.at_level(logging.INFO):
        assert handle(req, run).status_code == 202
    (line,) = lines(caplog)
    assert line.levelno == logging.INFO
    text = line.getMessage()
    assert text.startswith("POST /api/messages -> 202 in ")
    assert text.endswith(" ms (batch 20260101000000abcdef123456)")
    assert "secret-key" not in text and "0123" not in text  # no query string, ever
    facts = vars(line)
    assert (facts["method"], facts["route"], facts["path"], facts["status"]) == (
        "POST", "/api/messages", "/api/messages", 202)
    assert isinstance(facts["durationMs"], float) and facts["durationMs"] >= 0
    assert facts["correlationId"] == facts["batch"] == "20260101000000abcdef123456"
    assert (facts["clientCorrelationId"], facts["traceId"]) == ("order-42", TRACE)


def test_a_phone_number_in_the_path_is_masked_and_the_route_names_it(
        caplog: pytest.LogCaptureFixture) -> None:
    req = request("GET", "http://localhost/api/conversations/%2B14255550123?from=%2B18005550100",
                  {"number": "+14255550123"})
    with caplog.at_level(logging.INFO):
        handle(req, lambda: json_response({}))
    (line,) = lines(caplog)
    assert line.getMessage().startswith("GET /api/conversations/***0123 -> 200 in ")
    assert vars(line)["route"] == "/api/conversations/{number}"
    assert "4255550123" not in json.dumps({k: str(v) for k, v in vars(line).items()})


def test_an_error_of_the_tree_is_its_problem_and_still_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    req = request("GET", "http://localhost/api/messages/nope-00000", {"id": "nope-00000"})

    def run() -> func.HttpResponse:
        concern(messageId="nope-00000")
        raise NotFound("No message with id 'nope-00000'.")

    with caplog.at_level(logging.INFO):
        assert handle(req, run).status_code == 404
    (line,) = lines(caplog)
    assert line.getMessage().startswith("GET /api/messages/nope-00000 -> 404 in ")
    assert (vars(line)["route"], vars(line)["messageId"]) == ("/api/messages/{id}", "nope-00000")
    assert "correlationId" not in vars(line)  # a message id alone names no batch


def test_a_5xx_of_the_tree_names_the_request(caplog: pytest.LogCaptureFixture) -> None:
    req = request("POST", "http://localhost/api/campaigns")

    def run() -> func.HttpResponse:
        raise StorageUnavailable("Table storage is unavailable")

    with caplog.at_level(logging.INFO):
        assert handle(req, run).status_code == 503
    failed = [r for r in caplog.records if r.name == "sms_http" and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        "request failed: POST /api/campaigns: Table storage is unavailable"]
    (line,) = lines(caplog)
    assert line.levelno == logging.WARNING and vars(line)["status"] == 503


def test_an_unhandled_error_logs_its_traceback_naming_method_and_path(
        caplog: pytest.LogCaptureFixture) -> None:
    req = request("POST", "http://localhost/api/messages")

    def run() -> func.HttpResponse:
        raise RuntimeError("a bug")

    with caplog.at_level(logging.INFO):
        response = handle(req, run)
    assert response.status_code == 500
    assert json.loads(response.get_body())["type"].endswith("/internal")
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == "unhandled error in POST /api/messages"
    assert error.exc_info is not None and error.exc_info[0] is RuntimeError
    assert "RuntimeError: a bug" in caplog.text and "Traceback" in caplog.text
    (line,) = lines(caplog)
    assert vars(line)["status"] == 500


@pytest.mark.parametrize(("headers", "ids"), [
    ({}, {}),
    ({"x-correlation-id": "line\nbreak"}, {}),  # would forge a log line: dropped
    ({"x-correlation-id": "a" * 129}, {}),
    ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, {}),  # the invalid trace id
    ({"traceparent": "garbage"}, {}),
    ({"traceparent": f"00-{TRACE.upper()}-00f067aa0ba902b7-01"}, {"traceId": TRACE}),
])
def test_only_well_formed_caller_ids_are_logged(headers: dict[str, str],
                                                ids: dict[str, str]) -> None:
    assert caller_ids(headers) == ids


def test_route_and_path_keep_ids_and_never_the_query() -> None:
    assert route_and_path("http://h/api/campaigns/c1/send?x=1", {"id": "c1", "action": "send"}
                          ) == ("/api/campaigns/{id}/{action}", "/api/campaigns/c1/send")
    # A batch id is all digits now and then: 26 of them are no phone number.
    batch = "20260101000000123456789012"
    assert route_and_path(f"http://h/api/messages/{batch}-00001", {"id": f"{batch}-00001"}
                          ) == ("/api/messages/{id}", f"/api/messages/{batch}-00001")
