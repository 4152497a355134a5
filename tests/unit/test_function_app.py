"""The function app registers the functions Azure knows by name (alerts and hooks use them)."""

from __future__ import annotations

from tests.app_functions import app_functions

CONTRACT = {
    # name: (trigger type, route or queue or schedule)
    "send_sms": ("httpTrigger", "messages"),
    "find_messages": ("httpTrigger", "messages"),
    "message_status": ("httpTrigger", "messages/{id}"),
    "segments": ("httpTrigger", "segments"),
    "dispatch_sms": ("queueTrigger", "sms-outbound"),
    "sweep_outbox": ("timerTrigger", "30 * * * * *"),
    "inbound_webhook": ("httpTrigger", "inbound"),
    "conversation_index": ("httpTrigger", "conversations"),
    "conversations": ("httpTrigger", "conversations/{number}"),
    "delivery_report": ("queueTrigger", "sms-delivery-reports"),
    "expire_messages": ("timerTrigger", "0 5 * * * *"),
    "reconcile_reports": ("timerTrigger", "0 */5 * * * *"),
    "campaigns": ("httpTrigger", "campaigns"),
    "campaign": ("httpTrigger", "campaigns/{id}"),
    "campaign_review": ("httpTrigger", "campaigns/{id}/review"),
    "audience_uploads": ("httpTrigger", "audiences/uploads"),
    "audience_upload_part": ("httpTrigger", "audiences/uploads/{id}/parts/{n}"),
    "backfill_conversations": ("timerTrigger", "0 */5 * * * *"),
    "campaign_actions": ("httpTrigger", "campaigns/{id}/{action:alpha}"),
    "campaign_fanout": ("queueTrigger", "sms-campaigns"),
    "campaign_scheduler": ("timerTrigger", "0 * * * * *"),
    "audiences": ("httpTrigger", "audiences"),
    "audience": ("httpTrigger", "audiences/{id}"),
    "audience_count": ("httpTrigger", "audiences/{id}/count"),
    "templates": ("httpTrigger", "templates"),
    "template": ("httpTrigger", "templates/{id}"),
    "health": ("httpTrigger", "health"),
    "optouts_admin": ("httpTrigger", "optouts/{action:alpha}"),
    "optouts_history": ("httpTrigger", "optouts/history"),
    "optouts_export": ("httpTrigger", "optouts/export"),
    "analytics": ("httpTrigger", "analytics"),
    "app_webhook": ("queueTrigger", "sms-webhook-out"),
    "console_page": ("httpTrigger", "console"),
    "console_files": ("httpTrigger", "console/{*path}"),
}


def _trigger(bindings: list[dict[str, object]]) -> tuple[str, str]:
    (t,) = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    where = t.get("route") or t.get("queueName") or t.get("schedule")
    return str(t["type"]), str(where)


def test_every_function_azure_knows_keeps_its_name_and_trigger() -> None:
    found = {name: _trigger(f["bindings"]) for name, f in app_functions().items()}
    assert found == CONTRACT


def test_only_health_and_the_console_are_anonymous_and_queues_use_the_app_storage() -> None:
    for name, f in app_functions().items():
        (t,) = [b for b in f["bindings"] if str(b["type"]).endswith("Trigger")]
        if t["type"] == "httpTrigger":
            # The console serves no data: its page calls the API with the user's key.
            anonymous = {"health", "console_page", "console_files"}
            expected = "ANONYMOUS" if name in anonymous else "FUNCTION"
            assert str(t["authLevel"]).upper() == expected, name
        if t["type"] == "queueTrigger":
            assert t["connection"] == "AzureWebJobsStorage", name
