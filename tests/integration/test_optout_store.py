"""optout_store against Azurite: state, scopes, bulk checks and the append-only history."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import TableServiceClient

from optout_store import OptOutStore
from sms_core.use_cases.optouts import optout_history
from tests.integration.conftest import new_number


def make_store(storage: str, scope: str = "sender") -> OptOutStore:
    service = TableServiceClient.from_connection_string(storage)
    suffix = uuid.uuid4().hex[:10]
    state = service.create_table(f"OptOuts{suffix}")
    history = service.create_table(f"OptOutHistory{suffix}")
    return OptOutStore(state, history, scope)  # type: ignore[arg-type]


@pytest.fixture
def store(azurite_connection_string: str) -> OptOutStore:
    return make_store(azurite_connection_string)


def test_opt_out_is_per_sender_by_default(store: OptOutStore) -> None:
    a, b, to = "+18005550101", "+18005550102", new_number()
    assert store.opt_out(a, to, source="keyword", keyword="STOP", text="stop please") is True
    assert store.is_opted_out(a, to) is True
    assert store.is_opted_out(b, to) is False
    assert store.opt_out(a, to, source="keyword", keyword="STOP") is False  # already out
    assert store.opt_in(a, to, source="keyword", keyword="START") is True
    assert store.is_opted_out(a, to) is False


def test_global_scope_blocks_every_sender(azurite_connection_string: str) -> None:
    store = make_store(azurite_connection_string, "global")
    to = new_number()
    store.opt_out("+18005550101", to, source="api")
    assert store.is_opted_out("+18005550199", to) is True
    assert store.opted_out_among("+18335550100", [to, new_number()]) == {to}


def test_global_opt_out_wins_over_a_sender_level_opt_in(azurite_connection_string: str) -> None:
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    suffix = uuid.uuid4().hex[:10]
    state = service.create_table(f"OptOuts{suffix}")
    history = service.create_table(f"OptOutHistory{suffix}")
    glob = OptOutStore(state, history, "global")
    per_sender = OptOutStore(state, history, "sender")
    to = new_number()
    glob.opt_out("+18005550101", to, source="admin")
    per_sender.opt_in("+18005550101", to, source="api")
    assert per_sender.is_opted_out("+18005550101", to) is True


def test_bulk_check_finds_exactly_the_opted_out(store: OptOutStore) -> None:
    sender = "+18005550103"
    numbers = [new_number() for _ in range(300)]
    out = set(numbers[::7])
    for n in out:
        store.opt_out(sender, n, source="api")
    store.opt_in(sender, numbers[7], source="api")  # back in: no longer blocked
    out.discard(numbers[7])
    assert store.opted_out_among(sender, numbers) == out
    assert store.opted_out_among(sender, []) == set()
    assert store.opted_out_among("+18005550104", numbers) == set()


def test_history_is_append_only_and_complete(store: OptOutStore) -> None:
    sender, to = "+18005550105", new_number()
    store.opt_out(sender, to, source="keyword", keyword="STOP", text="Stop!",
                  inbound_message_id="in-1")
    store.opt_out(sender, to, source="carrier", reason="4007")
    store.opt_in(sender, to, source="keyword", keyword="UNSTOP", text="unstop")
    entries = store.history(sender, to)
    assert [(e.action, e.source) for e in entries] == [
        ("opt-out", "keyword"), ("opt-out", "carrier"), ("opt-in", "keyword")]
    first = optout_history(store, sender, to).public()["value"][0]
    assert first["keyword"] == "STOP" and first["text"] == "Stop!"
    assert first["inboundMessageId"] == "in-1" and first["from"] == sender
    record = store.get(sender, to)
    assert record is not None and record.opted_out is False and record.keyword == "UNSTOP"


def test_an_opt_in_of_someone_never_opted_out_changes_nothing(store: OptOutStore) -> None:
    sender, to = "+18005550106", new_number()
    assert store.opt_in(sender, to, source="api") is False  # no optout.changed for the app
    assert store.opt_out(sender, to, source="api") is True
    assert store.opt_in(sender, to, source="api") is True
