"""The ACS gateway: sends through the `azure-communication-sms` SDK, one call per <=100 recipients.

`SmsClient.send()` draws a fresh `repeatabilityRequestId` for every call, which would defeat
ACS's de-duplication when we resend after a crash. So the gateway builds the SDK's own request
model with *our* stable ids and first-sent time, and sends it through the SDK's generated
operation (same pipeline: HMAC or Entra ID auth, retries, logging).

This is also the one place where ACS SDK errors become the error tree (`_provider_error`): every
failure of a send call is a ProviderThrottled, ProviderUnavailable or ProviderRejected, which is
what the dispatcher decides on. Storage SDK errors are translated in `azure_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DeserializationError,
    HttpResponseError,
    SerializationError,
    ServiceRequestError,
    ServiceResponseError,
)

from sms_core.adapters.azure_errors import is_unreadable_answer
from sms_core.adapters.http_pool import pooled_session, pooled_transport
from sms_core.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    SettingsError,
)
from sms_core.models.messages import MAX_RECIPIENTS_PER_CALL, OutboundSms, SendOutcome
from sms_core.settings import Settings


def _retry_after(exc: HttpResponseError) -> float:
    headers: Any = getattr(exc.response, "headers", None) or {}
    raw = headers.get("Retry-After") or headers.get("retry-after") or "1"
    try:
        return max(1.0, float(raw))
    except ValueError:
        return 5.0


def _provider_error(exc: BaseException) -> ProviderError | None:
    """The ProviderError for an exception out of the ACS SDK's send; None if it is not the SDK's.

    429 is throttling; another 4xx a rejection that a retry would meet again; everything else
    (5xx, no answer, an answer that cannot be read) is "unavailable, retry later". A retry is
    safe even when ACS may have taken the call, since its repeatability ids de-duplicate it.
    """
    if isinstance(exc, ClientAuthenticationError):
        return ProviderRejected(f"ACS refused the credentials: {exc.message}", 401)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status == 429:
            return ProviderThrottled(f"ACS throttled the sender: {exc.message}", _retry_after(exc))
        if 400 <= status < 500:
            return ProviderRejected(f"ACS rejected the request: {exc.message}", status)
        # 5xx, or no status, or a 2xx whose body could not be decoded (DecodeError).
        return ProviderUnavailable(f"ACS failed: {exc.message}", status)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return ProviderUnavailable(f"ACS could not be reached: {exc}")
    if isinstance(exc, SerializationError):
        # The request could not be built: the same request would fail the same way.
        return ProviderRejected(f"ACS request could not be built: {exc}")
    if isinstance(exc, AzureError | DeserializationError) or is_unreadable_answer(exc):
        return ProviderUnavailable(f"ACS answered what we cannot read: "
                                   f"{type(exc).__name__}: {exc}")
    return None


class AcsSmsGateway:
    """The real gateway on the azure-communication-sms SDK."""

    def __init__(self, settings: Settings) -> None:
        from azure.communication.sms import SmsClient

        # Our queue is the retry mechanism for throttling and outages (it never sleeps a worker),
        # so the SDK only retries connection-level blips.
        # Its own pool, as wide as the app's concurrency (`adapters/http_pool.py`): every
        # dispatch in flight, and a personalised campaign job's calls side by side.
        options: dict[str, Any] = {"retry_total": 2, "retry_status": 0,
                                   "retry_backoff_factor": 0.2,
                                   "transport": pooled_transport(
                                       pooled_session(), connection_timeout=10,
                                       read_timeout=30)}
        credentials = settings.acs_credentials()
        if credentials is not None:
            endpoint, key = credentials
            self._client = SmsClient(endpoint, AzureKeyCredential(key), **options)
        elif settings.acs_endpoint:
            from azure.identity import DefaultAzureCredential

            self._client = SmsClient(settings.acs_endpoint, DefaultAzureCredential(), **options)
        else:
            raise SettingsError("Neither ACS_CONNECTION_STRING nor ACS_ENDPOINT is set")

    def send(self, sender: str, recipients: Sequence[OutboundSms], message: str, *,
             tag: str | None, delivery_report: bool) -> list[SendOutcome]:
        """Send one call to ACS and map its per-recipient answer."""
        from azure.communication.sms._generated.models import (
            SendMessageRequest,
            SmsRecipient,
            SmsSendOptions,
        )

        if not 1 <= len(recipients) <= MAX_RECIPIENTS_PER_CALL:
            raise ValueError(f"1..{MAX_RECIPIENTS_PER_CALL} recipients per call")
        request = SendMessageRequest(
            from_property=sender,
            sms_recipients=[SmsRecipient(to=r.to, repeatability_request_id=r.repeatability_id,
                                         repeatability_first_sent=r.first_sent)
                            for r in recipients],
            message=message,
            sms_send_options=SmsSendOptions(enable_delivery_report=delivery_report, tag=tag),
        )
        try:
            response = self._client._sms_service_client.sms.send(request)
        except Exception as exc:
            error = _provider_error(exc)
            if error is None:
                raise  # not a failure of ACS or its SDK: a bug of ours, never to be retried
            raise error from exc
        try:
            return [_outcome(item) for item in response.value]
        except (TypeError, ValueError, AttributeError) as exc:
            # A 202 without the per-recipient list or its fields: ACS answered, but not in a
            # form we can use. Retrying is safe (repeatability ids), recording a result is not.
            raise ProviderUnavailable(f"ACS answered what we cannot read: "
                                      f"{type(exc).__name__}: {exc}", 202) from exc


def _outcome(item: Any) -> SendOutcome:
    """One recipient's answer of a send call."""
    duplicate = (item.repeatability_result or "").lower() == "rejected"
    return SendOutcome(
        to=item.to, accepted=bool(item.successful) or duplicate,
        provider_message_id=item.message_id, http_status=int(item.http_status_code),
        error=None if item.successful else item.error_message, duplicate=duplicate)
