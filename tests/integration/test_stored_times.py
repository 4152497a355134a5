"""A time storage cannot read back never makes a read a 500.

The Tables SDK writes a year below 1000 without its leading zeros ("496-09-26T...") and then
cannot parse what it wrote. Requests can no longer store such a time (`sendAt` is never in the
past, an event's timestamp before 1601 is ignored); a row written so before that rule, in
Azurite, must still answer as the error tree says, not as an unhandled ValueError.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_core.adapters.storage import MESSAGES_TABLE
from sms_core.bootstrap import Services
from sms_core.errors import StorageUnavailable
from sms_core.models.records import split_message_id
from sms_core.use_cases.messages import get_message
from sms_http.problems import problem_for
from tests.integration.conftest import new_number
from tests.integration.flows import send


def test_a_stored_send_at_of_year_496_reads_as_storage_unavailable_not_a_crash(
        services: Services) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    (entry,) = send(services, to=new_number(), message="later", sendAt=at.isoformat()).messages
    batch, index = split_message_id(entry.id)
    table = services.storage.table(MESSAGES_TABLE)
    table.update_entity({"PartitionKey": batch, "RowKey": f"{index:05d}",
                         "SendAt": datetime(496, 9, 26, 0, 2, 24, tzinfo=UTC)})
    with pytest.raises(StorageUnavailable) as info:
        get_message(services.messages, entry.id)
    assert problem_for(info.value).status == 503
    assert "could not read" in info.value.detail or "ValueError" in info.value.detail
