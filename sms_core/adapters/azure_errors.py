"""The one place where Azure Storage SDK errors become the project's error tree.

Why one place: every Table and Queue adapter used to write `except AzureError as exc: raise
StorageUnavailable(...) from exc` by hand, about sixty times. The copies drifted (some named the
exception type, some did not) and all of them missed the SDK failing in ways that are not an
`AzureError`: a storage error answer whose body has no `<Message>` makes the Queue SDK raise
`TypeError` while it builds its own exception, a Table error body of an unexpected shape makes
the Tables SDK raise `KeyError`; both escaped as a 500 instead of a retryable 503.

What maps to what (`storage_errors`):

    raised inside the `with` block (or the decorated function)          becomes
    ---------------------------------------------------------------   -------------------------
    any `azure.core.exceptions.AzureError` (connection failures,       StorageUnavailable (503,
      timeouts, HttpResponseError and its subclasses, DecodeError ...)    safe to retry), naming
    `DeserializationError`: the SDK could not read a service answer       the storage that failed
    `TypeError`, `ValueError`, `LookupError`, `AttributeError`, XML
      `ParseError` raised by the SDK's own code while it held the
      service's answer (see `is_unreadable_answer`): it broke on a
      malformed body or value
    an exception type listed in `keep`                                 itself: the adapter
                                                                         handles it around the block
    anything else: `SmsError`s, and `TypeError`/`KeyError`/...          itself: a bug stays a bug,
      raised by our code or by the SDK rejecting our input               not a storage outage

The expected answers an adapter handles itself (ResourceNotFoundError, ResourceExistsError,
ResourceModifiedError, TableTransactionError with a given error code) are caught inside the block
before they reach `storage_errors`, or listed in `keep` when they are caught outside it; what the
adapter re-raises from inside the block is translated like any other Azure error.

ACS is the other SDK: its errors become `ProviderError`s in one place too, the gateway
(`sms_core.adapters.acs_gateway`), because they map on HTTP status and Retry-After to a different
branch of the tree. It uses `is_unreadable_answer` from here for the same malformed-answer case.
"""

from __future__ import annotations

import os
import sysconfig
from contextlib import ContextDecorator
from enum import Enum
from types import FrameType, TracebackType
from xml.etree.ElementTree import ParseError

from azure.core.exceptions import AzureError, DeserializationError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.transport import HttpResponse as LegacyHttpResponse
from azure.core.rest import HttpResponse

from sms_core.errors import StorageUnavailable

# What an SDK raises when it trips over data it did not expect (a missing key, a None where a
# string was meant, a stored time it cannot parse: the Tables SDK writes a year below 1000
# without its leading zeros and its own strptime then refuses it). The SDKs raise no KeyError
# or AttributeError on purpose; TypeError and ValueError they do raise on purpose for input
# they refuse, which `is_unreadable_answer` tells apart. An answer that is no XML at all (a
# "201 Created" cut off before its body) makes the Queue SDK's ElementTree raise ParseError.
_TRIPPED = (TypeError, ValueError, LookupError, AttributeError, ParseError)
# Never raised on purpose: where the SDK raises one of these after it has turned the answer
# into one of its models (a "201 Created" whose body was a web page, read as an empty list of
# sent messages), the model stands for the answer.
_NEVER_ON_PURPOSE = (LookupError, AttributeError)
# What an SDK frame holds once the service has answered: the HTTP response, or the Azure error
# built from it while the SDK turns it into a more specific one.
_ANSWER = (HttpResponse, LegacyHttpResponse, PipelineResponse, HttpResponseError)
_SDK_PACKAGES = ("azure.", "msrest.")


def error_code(exc: BaseException) -> str | None:
    """The service's error code of an Azure error (`EntityAlreadyExists`, `TableNotFound`).

    None when the exception carries none. The Tables SDK gives a plain string for transactions
    but a `TableErrorCode` member elsewhere, whose str() is "TableErrorCode.X" on Python 3.11:
    the member's value is returned, so callers compare with the service's own spelling.
    """
    code = getattr(exc, "error_code", None)
    if code is None:
        return None
    return str(code.value) if isinstance(code, Enum) else str(code)


def _in_sdk(frame: FrameType) -> bool:
    return str(frame.f_globals.get("__name__", "")).startswith(_SDK_PACKAGES)


_STDLIB = os.path.normcase(sysconfig.get_paths()["stdlib"]) + os.sep


def _in_stdlib(frame: FrameType) -> bool:
    # The SDK's own parsing often fails one call down, in the standard library (its
    # `strptime` of a stored time): the raise site that counts is the caller of those frames.
    path = os.path.normcase(frame.f_code.co_filename)
    return path.startswith(_STDLIB) and "site-packages" not in path


def is_unreadable_answer(exc: BaseException) -> bool:
    """True when the SDK itself broke on an answer of the service (a malformed body).

    That is: a TypeError, ValueError, LookupError or AttributeError whose raise site is SDK
    code (not ours, nor our code that the SDK called back; frames of the standard library that
    the SDK called are looked through), raised while some SDK frame on the way held the
    service's answer (or in the SDK's deserializer, which reads nothing else; or, for a
    LookupError or AttributeError, which no SDK raises on purpose, one of its models made from
    the answer). Both conditions
    matter: the first keeps our own bugs in the block from being retried as outages; the second
    keeps out the TypeErrors and ValueErrors the SDK raises on purpose, before sending anything,
    for input it refuses (an unsupported property type, an int too large for Edm.Int32): those
    are our bugs too, and retrying them would fail the same way.
    """
    if not isinstance(exc, _TRIPPED):
        return False
    frames: list[FrameType] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    while frames and _in_stdlib(frames[-1]):
        frames.pop()
    if not frames or not _in_sdk(frames[-1]):
        return False
    sdk = [frame for frame in frames if _in_sdk(frame)]
    values = [value for frame in sdk for value in frame.f_locals.values()]
    return (any(_reads_answers(frame) for frame in sdk)
            or any(isinstance(value, _ANSWER) for value in values)
            or (isinstance(exc, _NEVER_ON_PURPOSE) and any(map(_is_sdk_model, values))))


def _is_sdk_model(value: object) -> bool:
    # The SDKs' generated models (`azure.storage.queue._generated.models...`): what an answer
    # is deserialized into.
    return "._generated.models" in type(value).__module__


def _reads_answers(frame: FrameType) -> bool:
    # The SDKs' deserializer modules read nothing but the service's answers, already decoded
    # from the HTTP body (so no frame holds the response any more): `_convert_to_entity` of
    # the Tables SDK parsing a stored Edm.DateTime, for one.
    module = str(frame.f_globals.get("__name__", ""))
    return "deserializ" in module.rpartition(".")[2]


def is_storage_failure(exc: BaseException) -> bool:
    """Whether `exc`, raised by a Table or Queue call, means "storage failed" (see the table)."""
    return (isinstance(exc, AzureError | DeserializationError)
            or is_unreadable_answer(exc))


def storage_unavailable(what: str, exc: BaseException) -> StorageUnavailable:
    """The StorageUnavailable for a failure of `what` storage (raise it `from exc`)."""
    return StorageUnavailable(f"{what} storage failed: {type(exc).__name__}: {exc}")


class storage_errors(ContextDecorator):
    """Context manager and decorator: storage failures inside become StorageUnavailable.

    `what` names the storage in the message ("Campaign" gives "Campaign storage failed: ...").
    Exceptions of the types in `keep` pass through untouched, for adapters that catch them
    outside the block (a conflict the caller retries). An instance holds no state, so one can
    be shared, nested and used from several threads at once. It never swallows an exception.
    """

    def __init__(self, what: str, *, keep: tuple[type[BaseException], ...] = ()) -> None:
        self.what = what
        self.keep = keep

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, self.keep) or not is_storage_failure(exc):
            return
        raise storage_unavailable(self.what, exc) from exc
