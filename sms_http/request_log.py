"""The one log line per HTTP request: method, route, status, duration and the ids it concerns.

`sms_http.handle` writes it for every function, so no blueprint logs its own requests. What it
never logs: the query string (`?code=` is the function key, `?to=` a phone number), bodies, and
a phone number in the path but its last 4 digits.

Correlation: the line's `correlationId` is the batch the request created or read (see
`sms_core.logs`), the id that its dispatch and delivery report lines carry too. A caller's own
`x-correlation-id` (when it is a plain token) and the trace id of a W3C `traceparent` are logged
beside it as `clientCorrelationId` and `traceId`, so a caller's id finds our batch; they are not
used as the correlation id, because only our batch id travels through ACS and back with each
delivery report. (In Azure the Functions host already joins its own request telemetry to the
caller's `traceparent` as the operation id.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from sms_core.logs import correlation_of, fields, mask_number

log = logging.getLogger(__name__)

_PHONE_SEGMENT = re.compile(r"\+?\d{6,15}")  # E.164 has at most 15 digits; batch ids 26
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def route_and_path(url: str, route_params: Mapping[str, str]) -> tuple[str, str]:
    """(route, path) of a request URL: the route with each route parameter's segment as
    `{name}`, and the path with phone numbers masked. No query string in either."""
    segments = [unquote(s) for s in urlsplit(url).path.split("/")]
    names = {value: name for name, value in route_params.items() if value}
    route = "/".join(f"{{{names[s]}}}" if s in names else s for s in segments)
    path = "/".join(mask_number(s) if _PHONE_SEGMENT.fullmatch(s) else s for s in segments)
    return route, path


def caller_ids(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's `x-correlation-id` (a plain token only: no line breaks into our log) and
    the trace id of its `traceparent`, when well-formed."""
    out: dict[str, str] = {}
    client = (headers.get("x-correlation-id") or "").strip()
    if _CLIENT_ID.fullmatch(client):
        out["clientCorrelationId"] = client
    trace = _TRACEPARENT.fullmatch((headers.get("traceparent") or "").strip().lower())
    if trace and trace.group(1) != "0" * 32:
        out["traceId"] = trace.group(1)
    return out


def log_request(method: str, route: str, path: str, status: int, duration_ms: float,
                concerns: Mapping[str, str], headers: Mapping[str, str]) -> None:
    """Write the request's line (WARNING for a 5xx, INFO otherwise)."""
    correlation = correlation_of(concerns)
    # A message id starts with its batch: the text names the message only.
    shown = {k: v for k, v in concerns.items()
             if not (k == "batch" and concerns.get("messageId", "").startswith(f"{v}-"))}
    about = ", ".join(f"{key} {value}" for key, value in shown.items())
    log.log(logging.WARNING if status >= 500 else logging.INFO,
            "%s %s -> %d in %.1f ms%s", method, path, status, duration_ms,
            f" ({about})" if about else "",
            extra=fields(correlation, method=method, route=route, path=path, status=status,
                         durationMs=round(duration_ms, 1), **concerns, **caller_ids(headers)))
