"""A paging cursor this API did not hand out is a 400 naming it, on every listing: `after` of
`GET /api/campaigns`, `continuationToken` of `GET /api/conversations/{number}`."""

from __future__ import annotations

import base64
import json

import pytest

from sms_core.bootstrap import Services
from sms_core.errors import RequestInvalid
from sms_core.models.queries import PageQuery
from sms_core.use_cases.campaigns import list_campaigns, prepare_campaign
from sms_http.event_grid import inbound_post
from sms_http.requests import campaign_request
from tests.integration.conftest import SENDER, new_number
from tests.integration.test_inbound import sms_event


def token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize("after", ["garbage", "c1", "' or 1 eq 1"])
def test_campaigns_after_garbage_is_a_400_not_an_empty_page(services: Services,
                                                            after: str) -> None:
    prepare_campaign(services, campaign_request(json.dumps({
        "name": "paging", "template": "Hi", "audience": {"recipients": [{"to": new_number()}]}}),
        "application/json", {}))
    with pytest.raises(RequestInvalid) as info:
        list_campaigns(services.campaigns, PageQuery(10, after))
    assert [e.field for e in info.value.errors] == ["after"]


def test_conversation_tokens_not_from_this_api_are_a_400(services: Services) -> None:
    person = new_number()
    for _ in range(3):
        inbound_post(services, sms_event(person, SENDER, "hello"))
    _, real = services.conversations.page(SENDER, person, 2)
    assert real
    assert len(services.conversations.page(SENDER, person, 2, real)[0]) == 1
    for bad in ["garbage", token({"a": 1}), token([1, 2]), token({"PartitionKey": 5}),
                token({"PartitionKey": "a", "RowKey": "b", "Top": 1}),
                token({"PartitionKey": f"{SENDER}|{person}", "RowKey": "x\r\nInjected: 1"})]:
        with pytest.raises(RequestInvalid) as info:
            services.conversations.page(SENDER, person, 2, bad)
        assert [e.field for e in info.value.errors] == ["continuationToken"], bad
