"""The HTTP edge shared by the blueprints: JSON answers and the error-to-problem mapping.

The only package besides the blueprints and `function_app.py` that imports `azure.functions`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import azure.functions as func

from sms_core.errors import SmsError
from sms_core.logs import request_scope
from sms_http.problems import PROBLEM_CONTENT_TYPE, Problem, problem, problem_for
from sms_http.request_log import log_request, route_and_path

log = logging.getLogger(__name__)


def new_blueprint() -> func.Blueprint:
    """A blueprint for one package's functions (registered by `function_app.py`)."""
    # azure-functions ships Blueprint.__init__ without annotations.
    return func.Blueprint()  # type: ignore[no-untyped-call]


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON answer."""
    return func.HttpResponse(json.dumps(body, separators=(",", ":")), status_code=status,
                             headers=headers, mimetype="application/json", charset="utf-8")


def problem_response(p: Problem) -> func.HttpResponse:
    """An RFC 9457 problem answer."""
    return func.HttpResponse(json.dumps(p.body), status_code=p.status, headers=p.headers,
                             mimetype=PROBLEM_CONTENT_TYPE, charset="utf-8")


def handle(req: func.HttpRequest, action: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Run a request's handler: errors of the tree become their problem, anything else a
    logged 500 naming the method and path; then the request's one log line
    (`request_log.log_request`)."""
    started = time.perf_counter()
    route, path = route_and_path(req.url, req.route_params)
    with request_scope() as concerns:
        response = _answer(req.method, path, action)
        log_request(req.method, route, path, response.status_code,
                    (time.perf_counter() - started) * 1000, concerns, req.headers)
    return response


def _answer(method: str, path: str, action: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    try:
        return action()
    except SmsError as exc:
        if not 400 <= problem_for(exc).status < 500:
            log.error("request failed: %s %s: %s", method, path, exc.detail)
        return problem_response(problem_for(exc))
    except Exception:
        log.exception("unhandled error in %s %s", method, path)
        return problem_response(problem(500, "Internal error",
                                        "The request failed unexpectedly; it is safe to retry "
                                        "with the same Idempotency-Key.", "internal"))
