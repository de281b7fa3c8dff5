"""``ValueLike``: a proxy acts like the value it names in Python expressions (arithmetic, comparisons, format, copy).

Each special method reads the value (one round trip) and applies Python's
own operator to it, so ``db['n'] * 2``, ``2 - db['n']``, ``-db['n']``,
``range(db['n'])``, ``f"{db['n']:5d}"`` and ``copy.deepcopy(db['l'])`` give
what they would give on the value itself. In-place ``+=``/``-=`` are the
proxy's own atomic server-side writes; the other in-place operators fall
back to Python's read, compute, assign.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Callable


def _value(other: Any) -> Any:
    """The value of another proxy (read now), or ``other`` itself."""
    return other._run() if isinstance(other, ValueLike) else other


def _forward(op: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    def method(self: ValueLike, other: Any) -> Any:
        return op(self._run(), _value(other))
    method.__name__ = name
    method.__doc__ = f"``{name}`` of the value this proxy names."
    return method


def _reflected(op: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    def method(self: ValueLike, other: Any) -> Any:
        return op(_value(other), self._run())
    method.__name__ = name
    method.__doc__ = f"``{name}``: the other operand on the left, the value this proxy names on the right."
    return method


def _unary(op: Callable[[Any], Any], name: str) -> Callable[[Any], Any]:
    def method(self: ValueLike) -> Any:
        return op(self._run())
    method.__name__ = name
    method.__doc__ = f"``{name}`` of the value this proxy names."
    return method


BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "matmul": operator.matmul,
          "truediv": operator.truediv, "floordiv": operator.floordiv, "mod": operator.mod, "divmod": divmod,
          "lshift": operator.lshift, "rshift": operator.rshift, "and": operator.and_, "or": operator.or_,
          "xor": operator.xor}
COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
               "gt": operator.gt, "ge": operator.ge}
UNARY = {"neg": operator.neg, "pos": operator.pos, "abs": abs, "invert": operator.invert, "bool": bool,
         "int": int, "float": float, "complex": complex, "index": operator.index, "trunc": math.trunc,
         "floor": math.floor, "ceil": math.ceil, "reversed": reversed, "copy": lambda value: value}


class ValueLike:
    """Mixin: Python's operators on a proxy act on the value it names (``self._run()``)."""

    __slots__ = ()

    def _run(self) -> Any:
        raise NotImplementedError

    def __pow__(self, other: Any, modulo: Any = None) -> Any:
        return pow(self._run(), _value(other), _value(modulo))

    def __rpow__(self, other: Any) -> Any:
        return pow(_value(other), self._run())

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self._run(), ndigits)

    def __format__(self, spec: str) -> str:
        return format(self._run(), spec)

    def __deepcopy__(self, memo: dict) -> Any:
        return self._run()   # a read is already a deep copy: nothing in it is shared with the tree

    def __repr__(self) -> str:
        return repr(self._run())

    def __str__(self) -> str:
        return str(self._run())


for _name, _op in BINARY.items():
    setattr(ValueLike, f"__{_name}__", _forward(_op, f"__{_name}__"))
    setattr(ValueLike, f"__r{_name}__", _reflected(_op, f"__r{_name}__"))
for _name, _op in COMPARISONS.items():
    setattr(ValueLike, f"__{_name}__", _forward(_op, f"__{_name}__"))
for _name, _op in UNARY.items():
    setattr(ValueLike, f"__{_name}__", _unary(_op, f"__{_name}__"))
ValueLike.__hash__ = None  # a proxy compares by the value it names, which can change
