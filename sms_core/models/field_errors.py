"""pydantic's validation errors in our own words: the one place they are mapped.

Each error becomes a `FieldError` at the member's public path (`audience.recipients[0].vars.name`,
`sendAt`: the JSON names, as the request spells them) with a message of ours chosen by the
error's type; pydantic's own sentences ("List should have at most 100 items after validation,
not 101") never reach a client. A value that fails every member of a union (a template
variable may be a string, a number or a boolean) gives pydantic one error per member; here it
is one error, saying what the value may be. When the value has the shape of one member (a list
of recipients) but something inside it is wrong, only the errors inside are kept (`to[1]`).
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from sms_core.errors import FieldError

_DATE_TIME = ("must be a date and time in ISO 8601 with a UTC offset, "
              "e.g. 2030-01-31T09:00:00+01:00")
# What a value must be, by the type error pydantic reports (also the words of a union).
_KINDS = {"string_type": "a string", "int_type": "a number", "int_parsing": "a number",
          "float_type": "a number", "float_parsing": "a number", "decimal_type": "a number",
          "bool_type": "true or false", "bool_parsing": "true or false",
          "list_type": "a list", "tuple_type": "a list", "dict_type": "an object",
          "model_type": "an object", "model_attributes_type": "an object",
          "none_required": "null"}
_DATE_TIME_TYPES = frozenset({"datetime_type", "datetime_parsing", "datetime_from_date_parsing",
                              "datetime_object_invalid", "timezone_aware"})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _wording(err: Mapping[str, Any]) -> str:
    """Our message for one pydantic error (by its type)."""
    kind, ctx = str(err["type"]), err.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        # Our own validators' words: pydantic only prefixes them.
        return str(ctx.get("error") or err["msg"])
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}"
    if kind in _DATE_TIME_TYPES:
        return _DATE_TIME
    if kind == "string_too_short":
        least = int(ctx.get("min_length", 1))
        return "must not be empty" if least == 1 else f"at least {_plural(least, 'character')}"
    if kind == "string_too_long":
        got = err.get("input")
        count = f" (got {len(got)})" if isinstance(got, str) else ""
        return f"at most {_plural(int(ctx['max_length']), 'character')}{count}"
    if kind == "too_short":
        return f"at least {_plural(int(ctx['min_length']), 'item')}"
    if kind == "too_long":
        got = ctx.get("actual_length")
        count = f" (got {got})" if got is not None else ""
        return f"at most {_plural(int(ctx['max_length']), 'item')}{count}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    return "is not valid"


def _unwrap(tp: Any) -> Any:
    """The type under `Annotated[...]` and `X | None` (not a union of several types)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _branch(union: Any, tag: Any) -> Any:
    """The member of `union` that pydantic's location tag (`str`, `list[str]`) names."""
    for member in get_args(union):
        inner = _unwrap(member)
        name = getattr(get_origin(inner) or inner, "__name__", "")
        if isinstance(tag, str) and name and (tag == name or tag.startswith(name + "[")):
            return inner
    return Any


def _field(model: type[BaseModel], key: Any) -> tuple[str, Any] | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.alias or name, info.annotation
    return None


def _locate(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, str | None]:
    """The public path of an error's location, and the path of the union it went through
    (None when it went through none), by walking the model's types along the location."""
    parts: list[str] = []
    union_at: str | None = None
    tp: Any = model

    def path() -> str:
        return "".join(parts).lstrip(".")

    for key in loc:
        tp = _unwrap(tp)
        if _is_union(tp):  # the key is the tag of the union member pydantic tried
            if union_at is None:
                union_at = path()
            tp = _branch(tp, key)
            continue
        origin = get_origin(tp)
        field = _field(tp, key) if isinstance(tp, type) and issubclass(tp, BaseModel) else None
        if field is not None:
            parts.append(f".{field[0]}")
            tp = field[1]
        elif isinstance(key, int):
            parts.append(f"[{key}]")
            tp = get_args(tp)[0] if origin in (list, tuple) and get_args(tp) else Any
        else:
            parts.append(f".{key}")
            tp = get_args(tp)[1] if origin is dict and len(get_args(tp)) == 2 else Any
    return path() or "body", union_at


def _one_of(kinds: list[str]) -> str:
    words = list(dict.fromkeys(_KINDS.get(k, "valid") for k in kinds))
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"must be {listed}"


def field_errors(model: type[BaseModel], exc: ValidationError) -> list[FieldError]:
    """The errors of `exc` (raised validating `model`) in our words, one per bad value, in
    the order pydantic found them."""
    located = [(err, *_locate(model, tuple(err["loc"]))) for err in exc.errors()]
    out: dict[str, str] = {}
    unions: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for err, path, union_at in located:
        if union_at is None:
            out.setdefault(path, _wording(err))
        else:
            if union_at not in unions:
                out.setdefault(union_at, "")  # keeps its place in the order
            unions.setdefault(union_at, []).append((err, path))
    for union_at, tried in unions.items():
        inside = [(bad, path) for bad, path in tried if path != union_at]
        if inside:  # the value has one member's shape: what is wrong inside it
            if not out[union_at]:
                del out[union_at]
            for bad, path in inside:
                out.setdefault(path, _wording(bad))
        elif not out[union_at]:
            out[union_at] = _one_of([str(bad["type"]) for bad, _ in tried])
    return [FieldError(path, message) for path, message in out.items()]
