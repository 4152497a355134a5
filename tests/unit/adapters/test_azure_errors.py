"""Azure SDK errors become the error tree in one place, and callers see only the tree.

Real adapter classes get small fake SDK clients: plain objects that raise, or the real SDK
clients on a stub HTTP transport that answers what a broken service would. The assertions are
what a caller of the adapter sees.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import azure.communication.sms
import pytest
import requests
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpRequest, HttpTransport, RequestsTransportResponse
from azure.data.tables import TableClient, TableTransactionError
from azure.storage.queue import QueueClient

from optout_store.store import OptOutStore
from sms_core.adapters.acs_gateway import AcsSmsGateway
from sms_core.adapters.analytics_store import AnalyticsStore
from sms_core.adapters.app_events import AppEventQueue, WebhookOutboxQueue
from sms_core.adapters.audience_template_store import AudienceStore, TemplateStore
from sms_core.adapters.awaiting_reports import AwaitingReportStore
from sms_core.adapters.azure_errors import error_code, storage_errors
from sms_core.adapters.campaign_store import CampaignStore
from sms_core.adapters.conversation_store import ConversationStore
from sms_core.adapters.idempotency_store import IdempotencyStore
from sms_core.adapters.inbound_store import InboundStore
from sms_core.adapters.job_queue import JobQueue
from sms_core.adapters.message_store import MessageStore
from sms_core.adapters.provider_index import ProviderIndex
from sms_core.adapters.sender_pacer import SenderPacer
from sms_core.errors import (
    NotFound,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    StorageUnavailable,
)
from sms_core.models.app_events import WebhookDelivery
from sms_core.models.messages import DispatchJob, MessageStatus, OutboundSms, SendOutcome
from sms_core.models.records import Change, MemberRecord, MessageRecord
from sms_core.rules.analytics import Fact
from sms_core.settings import load_settings

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
DAY = date(2024, 5, 1)
A, B = "+14255550100", "+14255550101"
# An Azurite-style connection string; the stub transport answers, nothing listens there.
STORAGE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
           + base64.b64encode(b"k" * 64).decode()
           + ";QueueEndpoint=http://127.0.0.1:9/devstoreaccount1"
           + ";TableEndpoint=http://127.0.0.1:9/devstoreaccount1")


# -- fakes ------------------------------------------------------------------------------------


class Raising:
    """A fake SDK client whose every call raises a fresh `make()` (queries too, when called)."""

    def __init__(self, make: Callable[[], BaseException]) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise self._make()
        return call


class FakeTable:
    """A fake TableClient: each method answers from `answers` (a value, or an exception to
    raise, or a list of those for successive calls); unlisted methods fail the test."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in self.answers:
            raise AssertionError(f"unexpected call {name}")

        def call(*_args: Any, **_kwargs: Any) -> Any:
            self.calls.append(name)
            answer = self.answers[name]
            if isinstance(answer, list) and answer and isinstance(answer[0], Step):
                answer = answer.pop(0).value
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return call


class Step:
    """One answer of a sequence (so that a list of rows is not mistaken for a sequence)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Entity(dict[str, Any]):
    """A Table entity as the SDK returns it: a dict with `metadata`."""

    def __init__(self, etag: str = "W/1", **values: Any) -> None:
        super().__init__(values)
        self.metadata = {"etag": etag}


def azure_error(cls: type[HttpResponseError], code: str | None = None,
                status: int | None = None) -> HttpResponseError:
    """An HttpResponseError subclass as the SDK raises it, with its error code and status."""
    exc = cls(message=f"{cls.__name__} {code or ''}".strip())
    exc.error_code = code  # type: ignore[attr-defined]
    exc.status_code = status
    return exc


class StubTransport(HttpTransport):  # type: ignore[misc]
    """What the real SDK sends through: answers every request with one canned HTTP response
    (or raises `fail`), so the SDK's own error handling runs on exactly that answer."""

    def __init__(self, status: int = 500, body: str = "", content_type: str = "application/xml",
                 headers: dict[str, str] | None = None, fail: BaseException | None = None
                 ) -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or {}
        self.fail = fail
        self.sent = 0

    def __enter__(self) -> StubTransport:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: HttpRequest, **kwargs: Any) -> RequestsTransportResponse:
        self.sent += 1
        if self.fail is not None:
            raise self.fail
        raw = requests.Response()
        raw.status_code = self.status
        raw._content = self.body.encode()
        raw.headers["Content-Type"] = self.content_type
        raw.headers.update(self.headers)
        raw.reason = "Stub"
        raw.url = request.url
        return RequestsTransportResponse(request, raw)


def table(transport: StubTransport) -> TableClient:
    return TableClient.from_connection_string(STORAGE, "Things", transport=transport,
                                              retry_total=0)


def queue(transport: StubTransport) -> QueueClient:
    return QueueClient.from_connection_string(STORAGE, "sms-outbound", transport=transport,
                                              retry_total=0)


# An error answer without <Message>: the Queue SDK fails on `None += str` (TypeError).
QUEUE_ERROR_WITHOUT_MESSAGE = ('<?xml version="1.0" encoding="utf-8"?>'
                               "<Error><Code>InternalError</Code></Error>")
# An OData error whose message is not {"value": ...}: the Tables SDK fails with KeyError.
TABLE_ERROR_WITHOUT_VALUE = json.dumps({"odata.error": {"code": "InternalError",
                                                        "message": {"lang": "en-US"}}})


def record(index: int = 0) -> MessageRecord:
    return MessageRecord(batch="b1", index=index, sender=A, to=B, body="hi",
                         status=MessageStatus.QUEUED, initial_status=MessageStatus.QUEUED,
                         segments=1, encoding="GSM-7", created_at=NOW, updated_at=NOW)


def stored(rec: MessageRecord) -> Entity:
    return Entity(PartitionKey=rec.batch, RowKey=f"{rec.index:05d}", Kind="message",
                  From=rec.sender, To=rec.to, Body="as first written", Status="queued",
                  InitialStatus="queued", Segments=1, Encoding="GSM-7", CreatedAt=NOW,
                  UpdatedAt=NOW)


def fact(fact_id: str = "f1") -> Fact:
    return Fact(fact_id, DAY, A, None, {"sent": 1})


# -- every Azure error is StorageUnavailable, naming the storage ---------------------------------

AZURE_ERRORS: list[Callable[[], BaseException]] = [
    lambda: ServiceRequestError("connection refused"),
    lambda: ServiceResponseError("connection reset"),
    lambda: HttpResponseError(message="500 InternalError"),
    lambda: ClientAuthenticationError(message="AuthenticationFailed"),
    lambda: DecodeError(message="not XML"),
    lambda: AzureError("anything else of azure-core"),
    lambda: DeserializationError("an answer the generated code cannot read"),
]

# (storage named in the message, a call of a real adapter on the fake client `c`)
CALLS: list[tuple[str, Callable[[Any], object]]] = [
    ("Message", lambda c: MessageStore(c).load("b1")),
    ("Message", lambda c: MessageStore(c).with_history("b1-00000")),
    ("Message", lambda c: MessageStore(c).create_batch([record()])),
    ("Job queue", lambda c: JobQueue(c).enqueue(DispatchJob(batch="b1", indices=[0]))),
    ("Event queue", lambda c: AppEventQueue(c, None).publish("t", "e1", {})),
    ("Webhook outbox", lambda c: WebhookOutboxQueue(c, c).give_up(WebhookDelivery({}))),
    ("Pacing", lambda c: SenderPacer(c, 60).reserve(A, 1)),
    ("Inbound", lambda c: InboundStore(c).claim("in-1", {})),
    ("Conversation", lambda c: ConversationStore(c).last_outbound(A, B, NOW, NOW)),
    ("AwaitingReports", lambda c: AwaitingReportStore(c).entries("2024050112")),
    ("Idempotency", lambda c: IdempotencyStore(c).claim("key", "body")),
    ("Provider index", lambda c: ProviderIndex(c, c).lookup("acs-1")),
    ("Unmatched report", lambda c: ProviderIndex(c, c).unmatched()),
    ("Analytics", lambda c: AnalyticsStore(c).record([fact()])),
    ("Analytics", lambda c: AnalyticsStore(c).query(DAY, DAY)),
    ("Campaign", lambda c: CampaignStore(c, c).get("c1")),
    ("Campaign", lambda c: CampaignStore(c, c).unschedule("c1", "k")),
    ("Audience", lambda c: AudienceStore(c).get("a1")),
    ("Template", lambda c: TemplateStore(c).all()),
    ("Opt-out", lambda c: OptOutStore(c, c).is_opted_out(A, B)),
    ("Opt-out", lambda c: OptOutStore(c, c).opt_out(A, B, source="api")),
]


@pytest.mark.parametrize("make", AZURE_ERRORS,
                         ids=lambda make: type(make()).__name__)
@pytest.mark.parametrize(("what", "call"), CALLS, ids=[f"{w}-{i}" for i, (w, _) in
                                                       enumerate(CALLS)])
def test_an_azure_error_is_storage_unavailable_naming_the_storage(
        what: str, call: Callable[[Any], object], make: Callable[[], BaseException]) -> None:
    with pytest.raises(StorageUnavailable) as info:
        call(Raising(make))
    name = type(make()).__name__
    assert info.value.detail.startswith(f"{what} storage failed: {name}: ")
    assert type(info.value.__cause__).__name__ == name  # the SDK's error stays in the chain


def test_the_job_queue_names_its_queue() -> None:
    jobs = JobQueue(queue(StubTransport(503, "", fail=ServiceRequestError("refused"))))
    with pytest.raises(StorageUnavailable, match=r"^Job queue sms-outbound storage failed: "):
        jobs.enqueue(DispatchJob(batch="b1", indices=[0]))


# -- a malformed error body: the SDK's own TypeError/KeyError is StorageUnavailable too ----------


def test_a_queue_error_without_message_is_storage_unavailable_not_a_type_error() -> None:
    broken = StubTransport(500, QUEUE_ERROR_WITHOUT_MESSAGE)
    with pytest.raises(TypeError):  # what the SDK does on its own: a 500 of ours
        queue(broken).send_message("x")
    with pytest.raises(StorageUnavailable, match=r"^Job queue sms-outbound storage failed: "
                                                 r"TypeError: ") as info:
        JobQueue(queue(broken)).enqueue(DispatchJob(batch="b1", indices=[0]))
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize(("what", "call"), [
    ("Provider index", lambda t: ProviderIndex(t, t).lookup("acs-1")),  # a point read
    ("Message", lambda t: MessageStore(t).load("b1")),  # a query, failing while iterated
    ("Audience", lambda t: AudienceStore(t).create("a", [MemberRecord(B, {})])),  # a transaction
    ("Opt-out", lambda t: OptOutStore(t, t).opt_in(A, B, source="admin")),
])
def test_a_table_error_body_of_another_shape_is_storage_unavailable(
        what: str, call: Callable[[TableClient], object]) -> None:
    with pytest.raises(StorageUnavailable, match=f"^{what} storage failed: KeyError: "):
        call(table(StubTransport(500, TABLE_ERROR_WITHOUT_VALUE, "application/json")))


def test_a_stored_time_the_sdk_cannot_parse_is_storage_unavailable_not_a_value_error() -> None:
    # What the SDK itself writes for a year below 1000 (no leading zeros), then cannot read.
    row = json.dumps({"value": [{"PartitionKey": "b1", "RowKey": "00000", "Kind": "message",
                                 "SendAt@odata.type": "Edm.DateTime",
                                 "SendAt": "496-09-26T00:02:24.000000Z"}]})
    with pytest.raises(StorageUnavailable, match=r"^Message storage failed: ValueError: "):
        MessageStore(table(StubTransport(200, row, "application/json"))).load("b1")


def test_a_value_error_the_sdk_raises_on_purpose_is_not_a_storage_failure() -> None:
    transport = StubTransport(204)
    with pytest.raises(ValueError, match="Mode"), storage_errors("Test"):
        table(transport).upsert_entity({"PartitionKey": "p", "RowKey": "r"},
                                       mode="sideways")  # type: ignore[arg-type]
    assert transport.sent == 0


def test_a_best_effort_removal_logs_a_malformed_answer(caplog: pytest.LogCaptureFixture) -> None:
    store = AwaitingReportStore(table(StubTransport(500, TABLE_ERROR_WITHOUT_VALUE,
                                                    "application/json")))
    with caplog.at_level(logging.WARNING):
        store.remove("b1-00000", NOW)  # best effort: the sweep double-checks
    assert "AwaitingReports storage failed: KeyError" in caplog.text


# -- our own bugs stay bugs ---------------------------------------------------------------------


def test_a_type_error_of_ours_inside_the_block_is_not_a_storage_failure() -> None:
    def bug() -> BaseException:
        return TypeError("a bug in our code, not an outage")
    with pytest.raises(TypeError, match="a bug in our code"):
        ConversationStore(Raising(bug)).last_outbound(A, B, NOW, NOW)  # type: ignore[arg-type]


def test_a_malformed_entity_is_our_key_error_not_a_storage_failure() -> None:
    rows = FakeTable(query_entities=[Entity(PartitionKey="b1", RowKey="00000")])
    with pytest.raises(KeyError, match="From"):
        MessageStore(rows).load("b1")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [object(), 2**40], ids=["unsupported type", "int over Int32"])
def test_input_the_sdk_refuses_is_not_a_storage_failure(bad: object) -> None:
    transport = StubTransport(204)
    with pytest.raises(TypeError):
        InboundStore(table(transport)).claim("in-1", {"Bad": bad})
    assert transport.sent == 0  # refused before anything was sent


def test_input_refused_while_handling_an_expected_error_is_not_a_storage_failure() -> None:
    # The TypeError is raised during the handling of a ResourceNotFoundError, yet by the SDK
    # refusing our input, not by the SDK reading an answer.
    missing = table(StubTransport(404, json.dumps({"odata.error": {
        "code": "ResourceNotFound", "message": {"value": "gone"}}}), "application/json"))
    with pytest.raises(TypeError), storage_errors("Test"):
        try:
            missing.get_entity("p", "r")
        except ResourceNotFoundError:
            missing.create_entity({"PartitionKey": "p", "RowKey": "r", "Bad": object()})


def test_storage_errors_never_swallows_and_passes_the_error_tree_through() -> None:
    with pytest.raises(NotFound), storage_errors("Test"):
        raise NotFound("not a storage failure")
    kept = storage_errors("Test", keep=(ResourceModifiedError,))
    with pytest.raises(ResourceModifiedError), kept:
        raise azure_error(ResourceModifiedError)

    @storage_errors("Decorated")
    def fails() -> None:
        raise ServiceRequestError("refused")
    with pytest.raises(StorageUnavailable, match=r"^Decorated storage failed: ServiceRequestError"):
        fails()


# -- the answers an adapter expects pass through to it -------------------------------------------


def test_not_found_answers_are_what_the_adapters_make_of_them() -> None:
    def gone() -> BaseException:
        return azure_error(ResourceNotFoundError, "ResourceNotFound", 404)
    missing: Any = Raising(gone)
    with pytest.raises(NotFound):
        MessageStore(missing).with_history("b1-00000")
    with pytest.raises(NotFound):
        CampaignStore(missing, missing).get("c1")
    with pytest.raises(NotFound):
        AudienceStore(missing).get("a1")
    assert ProviderIndex(missing, missing).lookup("acs-1") is None
    ProviderIndex(missing, missing).forget_unmatched("acs-1", "e1")
    assert OptOutStore(missing, missing).get(A, B) is None
    assert OptOutStore(missing, missing).is_opted_out(A, B) is False
    CampaignStore(missing, missing).unschedule("c1", "k")
    AwaitingReportStore(missing).remove("b1-00000", NOW)
    assert AnalyticsStore(missing).query(DAY, DAY).totals["sent"] == 0  # no table yet: zeros


def test_a_best_effort_removal_logs_a_storage_failure(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        AwaitingReportStore(Raising(lambda: ServiceRequestError("refused"))  # type: ignore[arg-type]
                            ).remove("b1-00000", NOW)
    assert "could not remove b1-00000" in caplog.text
    assert "AwaitingReports storage failed: ServiceRequestError" in caplog.text


def test_an_existing_row_is_read_back_not_an_error() -> None:
    existing = Entity(Fingerprint=_sha("body"), Batch="kbatch", Completed=True)
    idem = FakeTable(create_entity=azure_error(ResourceExistsError, "EntityAlreadyExists", 409),
                     get_entity=existing)
    claim = IdempotencyStore(idem).claim("key", "body")  # type: ignore[arg-type]
    assert (claim.batch, claim.completed) == ("kbatch", True)
    inbound = FakeTable(create_entity=azure_error(ResourceExistsError, "EntityAlreadyExists", 409),
                        get_entity=Entity(Done=True))
    assert InboundStore(inbound).claim("in-1", {}) is False  # type: ignore[arg-type]


def test_a_batch_that_exists_is_read_back_as_first_written() -> None:
    recs = [record(0), record(1)]
    messages = FakeTable(
        submit_transaction=azure_error(TableTransactionError, "EntityAlreadyExists", 409),
        query_entities=[stored(r) for r in recs])
    back = MessageStore(messages).create_batch(recs)  # type: ignore[arg-type]
    assert [r.body for r in back] == ["as first written"] * 2
    other = FakeTable(submit_transaction=azure_error(TableTransactionError, "InvalidInput", 400))
    with pytest.raises(StorageUnavailable, match=r"^Message storage failed: TableTransactionError"):
        MessageStore(other).create_batch(recs)  # type: ignore[arg-type]


def test_a_lone_message_that_exists_is_read_back_as_first_written() -> None:
    rec = record()  # one entity: a single insert, no transaction
    messages = FakeTable(create_entity=azure_error(ResourceExistsError, "EntityAlreadyExists", 409),
                         get_entity=stored(rec))
    [back] = MessageStore(messages).create_batch([rec])  # type: ignore[arg-type]
    assert back.body == "as first written"
    assert messages.calls == ["create_entity", "get_entity"]  # one message: its point read


def test_a_conflicting_change_is_decided_again_not_an_error() -> None:
    rec = record()
    rec.etag = "W/1"
    messages = FakeTable(
        update_entity=[Step(azure_error(ResourceModifiedError, "UpdateConditionNotSatisfied",
                                        412)), Step({"etag": "W/3"})],
        get_entity=stored(rec))
    [after] = MessageStore(messages).apply(  # type: ignore[arg-type]
        "b1", [0], lambda r: None if r.error else Change(fields={"error": "x"}),
        preloaded=[rec])
    assert (after.error, after.etag) == ("x", "W/3")
    assert messages.calls == ["update_entity", "get_entity", "update_entity"]


def test_the_pacer_reads_again_after_a_conflict_and_fails_on_an_outage() -> None:
    pace = FakeTable(get_entity=[Step(Entity(Tat=0.0)), Step(Entity(Tat=0.0))],
                     update_entity=[Step(azure_error(ResourceModifiedError, "ConditionNotMet",
                                                     412)), Step({"etag": "W/2"})])
    pacer = SenderPacer(pace, 60, clock=lambda: 1000.0)  # type: ignore[arg-type]
    assert pacer.reserve(A, 1) == 1000.0
    assert pace.calls == ["get_entity", "update_entity", "get_entity", "update_entity"]
    down = SenderPacer(Raising(lambda: ServiceResponseError("reset")), 60)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable, match=r"^Pacing storage failed: ServiceResponseError"):
        down.reserve(A, 1)


@pytest.mark.parametrize(("code", "counted"), [("ResourceNotFound", 1), ("TableNotFound", None)])
def test_analytics_tells_a_missing_row_from_a_missing_table(code: str, counted: int | None
                                                            ) -> None:
    counters = FakeTable(get_entity=azure_error(ResourceNotFoundError, code, 404),
                         submit_transaction=[{"etag": "W/1"}, {"etag": "W/2"}])
    store = AnalyticsStore(counters)  # type: ignore[arg-type]
    if counted is None:
        with pytest.raises(StorageUnavailable, match=r"^Analytics storage failed: "
                                                     r"ResourceNotFoundError"):
            store.record([fact()])
    else:
        assert store.record([fact()]) == counted


def test_analytics_tries_a_transaction_again_after_a_dropped_connection() -> None:
    # Safe by design: a ledger row that exists fails the insert and its fact counts as done.
    counters = FakeTable(get_entity=azure_error(ResourceNotFoundError, "ResourceNotFound", 404),
                         submit_transaction=[Step(ServiceResponseError("reset")),
                                             Step([{"etag": "W/1"}, {"etag": "W/2"}])])
    assert AnalyticsStore(counters).record([fact()]) == 1  # type: ignore[arg-type]
    assert counters.calls.count("submit_transaction") == 2
    down = FakeTable(get_entity=azure_error(ResourceNotFoundError, "ResourceNotFound", 404),
                     submit_transaction=ServiceResponseError("reset"))
    with pytest.raises(StorageUnavailable, match=r"^Analytics storage failed: "
                                                 r"ServiceResponseError"):
        AnalyticsStore(down).record([fact()])  # type: ignore[arg-type]
    assert down.calls.count("submit_transaction") == 4  # the first try and three more


def test_a_conversation_page_whose_storage_fails_is_unavailable_not_a_bad_request() -> None:
    # The page token is ours (a row key), never the service's: a failing read is a 503.
    down = FakeTable(get_entity=azure_error(ResourceNotFoundError, "ResourceNotFound", 404),
                     query_entities=_Pages(lambda: azure_error(HttpResponseError, None, 503)))
    with pytest.raises(StorageUnavailable, match=r"^Conversation storage failed: "):
        ConversationStore(down).page(A, B)  # type: ignore[arg-type]


def test_error_code_compares_with_the_services_spelling() -> None:
    from azure.data.tables import TableErrorCode
    assert error_code(azure_error(HttpResponseError, TableErrorCode.TABLE_NOT_FOUND)
                      ) == "TableNotFound"
    assert error_code(azure_error(TableTransactionError, "EntityAlreadyExists")
                      ) == "EntityAlreadyExists"
    assert error_code(ValueError("no code")) is None


# -- ACS: every failure of a send is one of the three provider errors ----------------------------


@pytest.fixture
def acs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[StubTransport], AcsSmsGateway]]:
    real = azure.communication.sms.SmsClient

    def gateway(transport: StubTransport) -> AcsSmsGateway:
        # The stub replaces the transport the gateway gives the client (its pooled one).
        def client(*args: Any, **options: Any) -> Any:
            return real(*args, **{**options, "transport": transport})

        monkeypatch.setattr(azure.communication.sms, "SmsClient", client)
        key = base64.b64encode(b"k" * 32).decode()
        return AcsSmsGateway(load_settings(
            ACS_CONNECTION_STRING=f"endpoint=http://127.0.0.1:9/;accesskey={key}"))
    yield gateway


def _send(gateway: AcsSmsGateway) -> list[SendOutcome]:
    return gateway.send(A, [OutboundSms(B, "rid-1", "Wed, 01 May 2024 12:00:00 GMT")], "hi",
                        tag=None, delivery_report=True)


def test_acs_success_maps_the_per_recipient_answer(
        acs: Callable[[StubTransport], AcsSmsGateway]) -> None:
    body = json.dumps({"value": [{"to": B, "messageId": "m1", "httpStatusCode": 202,
                                  "successful": True, "repeatabilityResult": "accepted"}]})
    [outcome] = _send(acs(StubTransport(202, body, "application/json")))
    assert (outcome.accepted, outcome.provider_message_id) == (True, "m1")


ACS_ERROR = json.dumps({"error": {"code": "X", "message": "no"}})


@pytest.mark.parametrize(("transport", "expected", "status"), [
    (StubTransport(429, ACS_ERROR, "application/json", {"Retry-After": "7"}),
     ProviderThrottled, 429),
    (StubTransport(500, ACS_ERROR, "application/json"), ProviderUnavailable, 500),
    (StubTransport(503, "<html>down</html>", "text/html"), ProviderUnavailable, 503),
    (StubTransport(400, ACS_ERROR, "application/json"), ProviderRejected, 400),
    (StubTransport(401, ACS_ERROR, "application/json"), ProviderRejected, 401),
    (StubTransport(400, "{not json", "application/json"), ProviderRejected, 400),
    (StubTransport(202, "{not json", "application/json"), ProviderUnavailable, 202),
    (StubTransport(202, "{}", "application/json"), ProviderUnavailable, 202),
    (StubTransport(202, json.dumps({"value": [{"to": B}]}), "application/json"),
     ProviderUnavailable, 202),
    (StubTransport(fail=ServiceRequestError("refused")), ProviderUnavailable, None),
    (StubTransport(fail=ServiceResponseError("reset")), ProviderUnavailable, None),
], ids=["429", "500", "503-html", "400", "401", "400-malformed", "202-not-json", "202-no-value",
        "202-no-status", "refused", "reset"])
def test_every_acs_failure_is_a_provider_error_the_dispatcher_handles(
        acs: Callable[[StubTransport], AcsSmsGateway], transport: StubTransport,
        expected: type[Exception], status: int | None) -> None:
    with pytest.raises(expected) as info:
        _send(acs(transport))
    assert type(info.value) is expected  # exactly one of the three the dispatcher catches
    assert getattr(info.value, "status", None) == status
    if expected is ProviderThrottled:
        assert info.value.retry_after == 7.0  # type: ignore[attr-defined]


def test_a_bug_of_ours_around_acs_is_not_a_provider_error(
        acs: Callable[[StubTransport], AcsSmsGateway]) -> None:
    with pytest.raises(ValueError, match="recipients per call"):
        acs(StubTransport(202, "{}", "application/json")).send(
            A, [], "hi", tag=None, delivery_report=True)


# -- helpers ------------------------------------------------------------------------------------


def _sha(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


class _Pages:
    """What `query_entities(...)` returns: its pages fail when the first one is read."""

    def __init__(self, make: Callable[[], BaseException]) -> None:
        self._make = make

    def by_page(self, continuation_token: Any = None) -> _Pages:
        return self

    def __iter__(self) -> _Pages:
        return self

    def __next__(self) -> list[Any]:
        raise self._make()
