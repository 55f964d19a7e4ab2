"""Declared parameter constraints, checked before any work (scikit-learn's
``_parameter_constraints``, trimmed to what recommenders need).

A plugin declares, for every ``__init__`` parameter, a list of constraints; a value is
valid when it satisfies any of them::

    _parameter_constraints = {
        "dim": [Interval(int, 1, None)],
        "lr": [Interval(float, 0, None, closed="neither")],
        "optimizer": [Options("adam", "sgd")],
        "encoder_reg": [None, Interval(float, 0, None)],   # None is allowed too
        "hidden": [IntSequence(1, None)],
        "bias": [bool],
    }

Declarations are collected over the class's MRO, so a base class declares the parameters
every subclass shares (``TorchRecommender``'s training fields). ``validate(cls, params,
sources)`` raises :class:`InvalidParameterError` naming the parameter, the value, what is
allowed and the config layer the value came from.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

from recarena.errors import RecArenaError


class InvalidParameterError(RecArenaError, ValueError):
    """A parameter value outside its declared constraints."""

    def __init__(self, owner: str, name: str, value: Any, allowed: str, source: str | None = None):
        where = f" (set in {source})" if source else ""
        super().__init__(f"Invalid value for parameter {name!r} of {owner}: {value!r}{where}. Allowed: {allowed}.")
        self.owner, self.name, self.value, self.allowed, self.source = owner, name, value, allowed, source


class Constraint:
    def is_satisfied_by(self, value: Any) -> bool:
        raise NotImplementedError

    def invalid_example(self) -> Any:
        """A value this constraint refuses (the conformance kit feeds it to ``fit``)."""
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


class Interval(Constraint):
    """A number of type ``int`` (bools refused) or ``float`` (ints accepted) in a range;
    ``None`` for an open end. ``closed``: 'both', 'left', 'right' or 'neither'."""

    def __init__(self, type_: type, left: float | None, right: float | None, closed: str = "both"):
        if type_ not in (int, float):
            raise TypeError("Interval type must be int or float")
        self.type, self.left, self.right, self.closed = type_, left, right, closed

    def is_satisfied_by(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.type is int and not isinstance(value, numbers.Integral):
            return False
        if isinstance(value, float) and math.isnan(value):
            return False
        lo_ok = self.left is None or (value >= self.left if self.closed in ("both", "left") else value > self.left)
        hi_ok = self.right is None or (value <= self.right if self.closed in ("both", "right") else value < self.right)
        return lo_ok and hi_ok

    def invalid_example(self):
        if self.left is not None:
            return self.left - 1
        if self.right is not None:
            return self.right + 1
        return "not-a-number"

    def __str__(self):
        kind = "an integer" if self.type is int else "a number"
        lb = "[" if self.closed in ("both", "left") else "("
        rb = "]" if self.closed in ("both", "right") else ")"
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        return f"{kind} in {lb}{lo}, {hi}{rb}"


class Options(Constraint):
    """One of a fixed set of values, or of a set computed from the class when checked
    (``Options(lambda cls: ...)``: the optimizer table a plugin may extend)."""

    def __init__(self, *values: Any):
        if len(values) == 1 and callable(values[0]):
            self._compute: Callable | None = values[0]
            self.values: tuple = ()
        else:
            self._compute, self.values = None, values

    def bind(self, cls: type) -> Options:
        return Options(*sorted(self._compute(cls))) if self._compute else self

    def is_satisfied_by(self, value):
        return any(value == v and type(value) is type(v) for v in self.values)

    def invalid_example(self):
        return "nosuch"

    def __str__(self):
        return "one of " + ", ".join(repr(v) for v in self.values)


class IntSequence(Constraint):
    """A non-empty list or tuple of integers, each in [lo, hi] (layer widths)."""

    def __init__(self, lo: int | None = 1, hi: int | None = None, min_len: int = 1):
        self.item, self.min_len = Interval(int, lo, hi), min_len

    def is_satisfied_by(self, value):
        return (isinstance(value, (list, tuple)) and len(value) >= self.min_len
                and all(self.item.is_satisfied_by(v) for v in value))

    def invalid_example(self):
        return [self.item.invalid_example()]

    def __str__(self):
        return f"a list of at least {self.min_len} item(s), each {self.item}"


class _TypeOf(Constraint):
    def __init__(self, t: type):
        self.t = t

    def is_satisfied_by(self, value):
        if self.t is int or self.t is float:
            return Interval(self.t, None, None).is_satisfied_by(value)
        return isinstance(value, self.t)

    def invalid_example(self):
        return 12345 if self.t is str else "not-a-" + self.t.__name__

    def __str__(self):
        return {bool: "true or false", str: "a string"}.get(self.t, f"a {self.t.__name__}")


class _NoneOK(Constraint):
    def is_satisfied_by(self, value):
        return value is None

    def invalid_example(self):
        return None

    def __str__(self):
        return "null"


def make_constraint(c: Any) -> Constraint:
    if isinstance(c, Constraint):
        return c
    if c is None:
        return _NoneOK()
    if isinstance(c, type):
        return _TypeOf(c)
    raise TypeError(f"not a parameter constraint: {c!r}")


def declared(cls: type) -> dict[str, list[Constraint]]:
    """The constraints ``cls`` and its bases declare, the subclass's winning per parameter."""
    out: dict[str, list[Constraint]] = {}
    for klass in reversed(cls.__mro__):
        for name, cons in (vars(klass).get("_parameter_constraints") or {}).items():
            out[name] = [make_constraint(c).bind(cls) if isinstance(c, Options) else make_constraint(c) for c in cons]
    return out


def describe(constraints: Iterable[Constraint]) -> str:
    return " or ".join(str(c) for c in constraints)


def invalid_example(constraints: list[Constraint]) -> Any:
    """A value every one of ``constraints`` refuses (None where no constraint allows it)."""
    for c in constraints:
        v = c.invalid_example()
        if not any(other.is_satisfied_by(v) for other in constraints):
            return v
    return object()


def validate(cls: type, params: dict[str, Any], sources: dict[str, str] | None = None,
             owner: str | None = None) -> None:
    """Raise :class:`InvalidParameterError` for the first value outside its constraints.

    ``sources`` maps a parameter to the config layer that set it, for the message."""
    validate_mapping(declared(cls), params, sources, owner or getattr(cls, "plugin_name", None) or cls.__name__)


def validate_mapping(constraints: dict[str, list], params: dict[str, Any], sources: dict[str, str] | None = None,
                     owner: str = "") -> None:
    """:func:`validate` against an explicit ``{name: [constraint, ...]}`` mapping."""
    for name, value in params.items():
        allowed = constraints.get(name)
        if allowed is None:
            continue
        allowed = [make_constraint(c) for c in allowed]
        if not any(c.is_satisfied_by(value) for c in allowed):
            raise InvalidParameterError(owner, name, value, describe(allowed), (sources or {}).get(name))
