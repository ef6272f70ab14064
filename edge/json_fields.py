"""Dataclasses from JSON objects with every field's type checked: what the bundle's JSON files
(the manifest) use so that ``"height": "224"``, a list where an object belongs, or ``NaN`` are
refused naming the field, and keys a newer writer added are kept and reported, not refused.
"""

from __future__ import annotations

import dataclasses
import logging
import math

log = logging.getLogger(__name__)


class FieldError(ValueError):
    """A JSON value of the wrong type or shape; the message names the field."""


def build(cls, values, where: str, source: str):
    """``cls(**values)`` with every field's JSON type checked; unknown keys kept and warned about."""
    if not isinstance(values, dict):
        name = where.rstrip(".") or "the manifest"
        raise FieldError(f"{source}: {name} must be a JSON object, got {type(values).__name__} {values!r:.60}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "unknown"}
    unknown = {key: value for key, value in values.items() if key not in known}
    if unknown:
        log.warning("%s: ignoring field(s) %s unknown to this runtime (a newer exporter?)", source,
                    ", ".join(where + str(key) for key in unknown))
    missing = [name for name, f in known.items() if name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise FieldError(f"{source}: missing field(s) {', '.join(where + name for name in missing)}")
    checked = {name: typed(values[name], known[name].type, where + name, source) for name in known if name in values}
    return cls(**checked, unknown=unknown)


_JSON_TYPES = {"int": (int, "an integer"), "float": (float, "a number"), "str": (str, "a string"),
               "bool": (bool, "true or false"), "dict": (dict, "a JSON object"), "tuple": (list, "a JSON list")}


def typed(value, annotation: str, name: str, source: str):
    """``value`` if it has the JSON type the dataclass annotation names (finite for numbers)."""
    if dataclasses.is_dataclass(value):  # a nested part built already
        return value
    annotation = str(annotation)
    if annotation.endswith("| None"):
        if value is None:
            return None
        annotation = annotation.split("|")[0].strip()
    expected, wording = _JSON_TYPES.get(annotation, (object, "a value"))
    try:
        if expected in (int, float):
            return json_number(value, expected)
        if expected is list:
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(value)
        if not isinstance(value, expected):
            raise TypeError
    except (TypeError, ValueError):
        raise FieldError(f"{source}: {name} must be {wording}, got {type(value).__name__} {value!r:.60}") from None
    return value


def json_number(value, kind: type):
    """A JSON number as ``kind``; refuses strings, booleans, NaN and infinities (ValueError/TypeError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"not finite: {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ValueError(f"not an integer: {value!r}")
        return int(value)
    return float(value)


def to_plain(value):
    """JSON-ready copy of a manifest part, its unknown fields put back where they were read."""
    if dataclasses.is_dataclass(value):
        known = {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "unknown"}
        return {**to_plain(value.unknown), **known}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value
