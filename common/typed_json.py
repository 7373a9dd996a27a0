"""Dataclasses to and from JSON, every field type-checked against its type hint.

A manifest or a record is user-reachable input (a hand edit, a bad disk): it
must turn into typed dataclasses or into one ``ShapeError`` naming the first
field that is wrong, never a traceback deep inside a reader. A field's JSON
key is its name unless ``metadata={"json": ...}`` says otherwise;
``metadata={"omit_none": True}`` leaves a None out; a class's ``DERIVED``
names keys written for readers and ignored on load; a ``validate(where)``
method, if any, runs after a class is built.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields, is_dataclass
from typing import Any


class ShapeError(ValueError):
    """A JSON value does not have the shape a dataclass needs; says where."""


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


Converter = Callable[[Any, str], Any]


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (and turned into dataclasses), or ShapeError."""
    return _converter(hint)(value, where)


@functools.cache
def _converter(hint: Any) -> Converter:
    """The checker of values of type ``hint``, worked out once per type: a manifest holds two dataclasses
    per piece and one per shard, and asking ``typing`` what a hint is for each value cost most of a load."""
    if hint is Any:
        return lambda value, where: value
    if _is_union(hint):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        convert = _converter(inner)
        return lambda value, where: None if value is None else convert(value, where)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return _ints if item is int else _list_of(item)
    if origin is dict:
        _, item = typing.get_args(hint)
        return _dict_of(item)
    if is_dataclass(hint):
        return _builder(hint)
    if hint is int:
        def integer(value: Any, where: str) -> Any:
            if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ShapeError(f"{where}: expected an integer, found {value!r:.40}")
            return value
        return integer

    def plain(value: Any, where: str) -> Any:
        if not isinstance(value, hint):
            raise ShapeError(f"{where}: expected {hint.__name__}, found {value!r:.40}")
        return value
    return plain


def _list_of(item: Any) -> Converter:
    convert = _converter(item)

    def checked(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise ShapeError(f"{where}: expected a list, found {type(value).__name__}")
        return [convert(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return checked


def _all_ints(value: list) -> bool:
    """Every item an int (not a bool), checked in C."""
    return not value or set(map(type, value)) == _INT


def _ints(value: Any, where: str) -> list[int]:
    """A list of integers (histograms, shapes: most lists of a manifest), checked in C where it can be."""
    if not isinstance(value, list):
        raise ShapeError(f"{where}: expected a list, found {type(value).__name__}")
    if _all_ints(value):
        return value
    convert = _converter(int)
    return [convert(v, f"{where}[{i}]") for i, v in enumerate(value)]



def _dict_of(item: Any) -> Converter:
    convert = _converter(item)

    def checked(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ShapeError(f"{where}: expected an object, found {type(value).__name__}")
        return {k: convert(v, f"{where}.{k}") for k, v in value.items()}
    return checked


_PLAIN = (int, str, bool, float)
_INT = {int}
_ABSENT = object()


def _exact(hint: Any) -> tuple[type, ...] | None:
    """The types a value of ``hint`` may have as it is, when ``hint`` is a plain type or an optional
    one: such a value is taken without a call (most fields of a manifest's 100,000 records)."""
    if hint in _PLAIN:
        return (hint,)
    if _is_union(hint):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and inner[0] in _PLAIN:
            return (inner[0], type(None))
    return None


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[tuple[str, str, Converter, bool, tuple[type, ...] | None], ...],
                                   frozenset[str]]:
    """(name, JSON key, converter, required, exact types) of each field, and the keys a JSON object may
    hold: worked out once per class (``get_type_hints`` is slow, and a manifest holds a dataclass per
    shard)."""
    hints = typing.get_type_hints(cls)
    spec = tuple((f.name, _json_name(f), _converter(hints[f.name]),
                  f.default is MISSING and f.default_factory is MISSING, _exact(hints[f.name])) for f in fields(cls))
    return spec, frozenset(k for _, k, *_ in spec) | frozenset(getattr(cls, "DERIVED", ()))


def from_json(cls: type, d: Any, where: str) -> Any:
    """An instance of the dataclass ``cls`` from the JSON object ``d``, every field type-checked."""
    return _builder(cls)(d, where)


@functools.cache
def _builder(cls: type) -> Converter:
    """``from_json`` for one class, its fields worked out once: a manifest of 36,000 pieces builds 200,000."""
    spec, allowed = _fields_of(cls)
    validate = getattr(cls, "validate", None)

    def build(d: Any, where: str) -> Any:
        if not isinstance(d, dict):
            raise ShapeError(f"{where}: expected an object, found {type(d).__name__}")
        values = {}
        for name, key, convert, required, exact in spec:
            v = d.get(key, _ABSENT)
            if v is _ABSENT:
                if required:
                    raise ShapeError(f"{where}: no {key!r}")
            elif exact is not None and type(v) in exact:  # bool is not int here: type(), not isinstance()
                values[name] = v
            elif convert is _ints and type(v) is list and _all_ints(v):
                values[name] = v  # a histogram or a shape, taken without a call
            else:
                values[name] = convert(v, f"{where}.{key}")
        if not allowed.issuperset(d):
            raise ShapeError(f"{where}: unexpected {sorted(set(d) - allowed)[0]!r}")
        obj = cls(**values)
        if validate is not None:
            obj.validate(where)
        return obj

    return build


def _json_name(f: Any) -> str:
    return f.metadata.get("json", f.name)


@functools.cache
def _json_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    return tuple((f.name, _json_name(f), bool(f.metadata.get("omit_none"))) for f in fields(cls))


def to_json(obj: Any) -> Any:
    """A dataclass as the JSON object ``from_json`` reads back, fields in their order."""
    if is_dataclass(obj):
        return {key: to_json(getattr(obj, name)) for name, key, omit_none in _json_fields(type(obj))
                if not (omit_none and getattr(obj, name) is None)}
    if isinstance(obj, list):
        if all(type(v) is int for v in obj):  # histograms and shapes, thousands of them
            return list(obj)
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj



@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while many records are built: they hold no cycles, and the
    collector, woken by every 700 new objects, walked all of them again and again (a third of a load)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
