"""Changing a recipient's opt-out state, and telling the app (`optout.changed`) when it changed.

Every source of a change goes through `change_optout`: a keyword in an inbound SMS, the admin
API and a carrier's opt-out code in a delivery report. The store reports whether the state
really changed, so a redelivered STOP changes nothing and tells the app nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from optout_store.records import Source
from sms_core.models.app_events import optout_changed_event
from sms_core.settings import Settings
from sms_core.use_cases.ports import AppEvents, OptOuts


class OptOutChangeDeps(Protocol):
    """The ports an opt-out change needs."""

    @property
    def settings(self) -> Settings: ...
    @property
    def optouts(self) -> OptOuts: ...
    @property
    def app_events(self) -> AppEvents: ...


def change_optout(deps: OptOutChangeDeps, sender: str, recipient: str, *, opted_out: bool,
                  source: Source, event_id: str, keyword: str | None = None,
                  text: str | None = None, inbound_message_id: str | None = None,
                  reason: str | None = None, at: datetime | None = None,
                  event_details: Mapping[str, Any] | None = None) -> bool:
    """Opt `recipient` out of (or back in to) `sender`; publish `optout.changed` if it changed.

    The keyword, text, inbound id and reason go to the history; `event_details` are added to
    the event's data (the keyword, the carrier's reason, ...).
    """
    change = deps.optouts.opt_out if opted_out else deps.optouts.opt_in
    if not change(sender, recipient, source=source, keyword=keyword, text=text,
                  inbound_message_id=inbound_message_id, reason=reason, at=at):
        return False
    event_type, event_id, data = optout_changed_event(
        event_id, sender, recipient, opted_out=opted_out, scope=deps.settings.optout_scope,
        source=source, **(event_details or {}))
    deps.app_events.publish(event_type, event_id, data, at=at)
    return True
