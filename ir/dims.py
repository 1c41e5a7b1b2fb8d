"""Dimensions: an integer, or an exact integer expression of named sizes with ranges.

A graph traced for one batch size serves one batch size; one whose batch dimension is a
symbol `n` in [1, 64] is one program for every size in range. A dimension (`Dim`) is

- an `int` >= 0 (a static size: the common case, and what every op also accepts), or
- a `SymDim`: a named size with its range, `n` in [lo, hi], declared on a graph input, or
- an integer expression of SymDims that type inference builds exactly: `n + 1`, `2*n`,
  `n*s`, `(n - 1)//2 + 1` (a strided convolution), `max(n, 4)`.

Expressions are sympy's (torch brings it): exact integer arithmetic, canonical forms, and
equality as structural identity, so `n*3*4` and `12*n` are the same dimension. A SymDim is a
sympy Symbol that carries its range (`lo`, `hi`): equal names with different ranges are
different symbols, and a graph may not hold both (the verifier says so). Integer results
are plain ints, never sympy Integers: static shapes stay tuples of ints.

Text: a dimension prints as an integer, a name, or an expression over `+ - * //`,
parentheses, `max(a, b)` and `min(a, b)` with no spaces (`f32[n,3,2*n+1]`); `parse_dim`
reads exactly that grammar back (no eval). The graph header declares each symbol's range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import sympy

from .errors import TypeInferenceError

#: words of the dimension and graph-text grammars a symbol may not be called
RESERVED = frozenset({"max", "min", "floordiv", "where", "in", "inf", "nan", "true", "false",
                      "none"})
#: the largest size a symbol may take unless its range says less (int32 indexing)
MAX_SIZE = 2**31 - 1


class SymDim(sympy.Symbol):
    """A named size in [lo, hi]: `SymDim("n", 1, 64)`."""

    __slots__ = ("lo", "hi")
    lo: int
    hi: int

    def __new__(cls, name: str, lo: int = 1, hi: int = MAX_SIZE) -> SymDim:
        if not (isinstance(name, str) and name.isidentifier()):
            raise TypeInferenceError(f"a dimension's name must be an identifier, got {name!r}")
        if name in RESERVED:
            raise TypeInferenceError(f"{name!r} is a keyword of dimension expressions; "
                                     "call the dimension something else")
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeInferenceError(f"the range of dimension {name!r} must be integers, "
                                         f"got [{lo!r}, {hi!r}]")
        if not 0 <= lo <= hi <= MAX_SIZE:
            raise TypeInferenceError(f"dimension {name!r} has range [{lo}, {hi}]; a range is "
                                     f"0 <= lo <= hi <= {MAX_SIZE}")
        obj = sympy.Symbol.__xnew__(cls, name, integer=True, nonnegative=True,
                                    positive=lo >= 1)
        obj.lo, obj.hi = lo, hi
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple, dict]:
        return (self.name, self.lo, self.hi), {}

    def _hashable_content(self) -> tuple:
        return (*super()._hashable_content(), self.lo, self.hi)

    def __repr__(self) -> str:  # as it prints in a shape (messages list shapes)
        return self.name


Dim: TypeAlias = "int | sympy.Expr"


def as_dim(d: Any) -> Dim:
    """`d` as a Dim: ints (numpy ints, sympy Integers) become int, expressions stay."""
    if isinstance(d, bool):
        raise TypeInferenceError(f"a dimension is an integer or a symbol, not {d!r}")
    if isinstance(d, int):
        return int(d)
    if isinstance(d, sympy.Expr):
        if d.is_Integer:
            return int(d)
        if not d.free_symbols or not all(isinstance(s, SymDim) for s in d.free_symbols):
            raise TypeInferenceError(f"dimension {d} is not an integer expression of "
                                     "declared dimensions (SymDim)")
        if not d.is_integer:
            raise TypeInferenceError(f"dimension {d} is not a whole number at every size "
                                     "(a size divided by a number that may not divide it)")
        return d.replace(_floor_of_negative, _as_ceiling)  # one form for each value
    if hasattr(d, "__index__"):
        return int(d.__index__())
    raise TypeInferenceError(f"a dimension is an integer or a symbol, not {d!r}")


def is_static(shape: Iterable[Dim]) -> bool:
    return all(isinstance(d, int) for d in shape)


def symbols(dims: Iterable[Dim]) -> set[SymDim]:
    """The SymDims the dimensions mention."""
    out: set[SymDim] = set()
    for d in dims:
        if not isinstance(d, int):
            out |= d.free_symbols
    return out


def size_range(d: Dim) -> tuple[int, int]:
    """Bounds on the values `d` takes over its symbols' ranges, by interval arithmetic:
    always sound, exact for expressions that mention each symbol once (n + 1, 2*n*s,
    (n - 3)//2 + 1), possibly wider otherwise."""
    if isinstance(d, int):
        return d, d
    lo, hi = _interval(sympy.sympify(d))
    return int(sympy.ceiling(lo)), int(sympy.floor(hi))


def _interval(e: sympy.Expr) -> tuple[sympy.Rational, sympy.Rational]:
    if e.is_Rational:
        return e, e
    if isinstance(e, SymDim):
        return sympy.Integer(e.lo), sympy.Integer(e.hi)
    if isinstance(e, sympy.Add | sympy.Mul | sympy.Max | sympy.Min):
        parts = [_interval(a) for a in e.args]
        lo, hi = parts[0]
        for a, b in parts[1:]:
            if isinstance(e, sympy.Add):
                lo, hi = lo + a, hi + b
            elif isinstance(e, sympy.Mul):
                corners = (lo * a, lo * b, hi * a, hi * b)
                lo, hi = min(corners), max(corners)
            elif isinstance(e, sympy.Max):
                lo, hi = max(lo, a), max(hi, b)
            else:
                lo, hi = min(lo, a), min(hi, b)
        return lo, hi
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 0:
        return _interval(sympy.Mul(*[e.base] * int(e.exp), evaluate=False))
    if isinstance(e, sympy.floor | sympy.ceiling):
        lo, hi = _interval(e.args[0])
        f = sympy.floor if isinstance(e, sympy.floor) else sympy.ceiling
        return f(lo), f(hi)
    raise TypeInferenceError(f"dimension {e} is not built from +, *, //, max and min")


def least(d: Dim) -> int:
    """The least value `d` takes: what a check that must hold at every size compares."""
    return d if isinstance(d, int) else size_range(d)[0]


def _sign(a: Dim, b: Dim) -> int:
    """1 if a >= b at every size in range, -1 if a <= b at every size, else 0."""
    lo, hi = size_range(as_dim(a - b))
    return 1 if lo >= 0 else -1 if hi <= 0 else 0


def smallest(a: Dim, b: Dim) -> Dim:
    """min(a, b), decided by the ranges where they decide it."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    sign = _sign(a, b)
    return b if sign > 0 else a if sign < 0 else as_dim(sympy.Min(a, b))


def largest(a: Dim, b: Dim) -> Dim:
    """max(a, b), decided by the ranges where they decide it."""
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    sign = _sign(a, b)
    return a if sign > 0 else b if sign < 0 else as_dim(sympy.Max(a, b))


def evaluate(d: Dim, sizes: Mapping[str, int]) -> int:
    """`d` at the given symbol sizes (by name)."""
    if isinstance(d, int):
        return d
    missing = sorted(s.name for s in d.free_symbols if s.name not in sizes)
    if missing:
        raise TypeInferenceError(f"dimension {format_dim(d)} needs a size for "
                                 f"{', '.join(missing)}")
    return int(d.xreplace({s: sizes[s.name] for s in d.free_symbols}))


def bind(shape: Sequence[Dim], actual: Sequence[int], sizes: dict[str, int]) -> str | None:
    """Match a declared shape against an array's; record each symbol's size in `sizes`.
    Returns why they do not match (rank, a static size, a symbol out of its range or bound
    to two sizes), or None."""
    if len(shape) != len(actual):
        return f"rank {len(actual)} where {len(shape)} is declared"
    for axis, (d, a) in enumerate(zip(shape, actual, strict=True)):
        if isinstance(d, SymDim):
            if not d.lo <= a <= d.hi:
                return f"axis {axis} is {a}, outside {d.name}'s range [{d.lo}, {d.hi}]"
            if sizes.setdefault(d.name, a) != a:
                return f"axis {axis} is {a} but {d.name} is {sizes[d.name]} elsewhere"
    for axis, (d, a) in enumerate(zip(shape, actual, strict=True)):
        if not isinstance(d, SymDim) and evaluate(d, sizes) != a:
            return f"axis {axis} is {a} where {format_dim(d)} = {evaluate(d, sizes)}"
    return None


def at_smallest(d: Any) -> int:
    """`d` with each symbol at the low end of its range (an int stays as it is)."""
    if isinstance(d, int | float):
        return int(d)
    return evaluate(d, {s.name: s.lo for s in d.free_symbols})


def specialize_value(v: Any, sizes: Mapping[str, int]) -> Any:
    """An attribute value with every dimension expression in it evaluated (lists nest)."""
    if isinstance(v, sympy.Expr):
        return evaluate(v, sizes)
    if isinstance(v, tuple | list):
        return type(v)(specialize_value(x, sizes) for x in v)
    return v


# -- text --------------------------------------------------------------------------------------
def format_dim(d: Dim) -> str:
    """The printed form `parse_dim` reads back."""
    if isinstance(d, int):
        return str(d)
    return _fmt(sympy.sympify(d))


def format_shape(shape: Sequence[Dim]) -> str:
    """`[2, 3]`, `[batch, 3]`: a shape in messages."""
    return "[" + ", ".join(format_dim(d) for d in shape) + "]"


def _fmt(e: sympy.Expr) -> str:
    if e.is_Integer:
        return str(int(e))
    if isinstance(e, sympy.Symbol):
        return e.name
    if isinstance(e, sympy.Add):
        terms = sorted(e.args, key=_term_order)
        out = _fmt(terms[0])
        for t in terms[1:]:
            c, rest = t.as_coeff_Mul()
            if c < 0:
                out += "-" + _fmt(-t)
            else:
                out += "+" + _fmt(t)
        return out
    if isinstance(e, sympy.Mul):
        c, rest = e.as_coeff_Mul()
        if c == -1:
            return "-" + _atom(rest)
        return "*".join(_atom(f) for f in e.as_ordered_factors())
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 0:
        return "*".join([_atom(e.base)] * int(e.exp))
    if isinstance(e, sympy.floor):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        if den.is_Integer and int(den) > 0:
            return f"{_atom(sympy.expand(num))}//{int(den)}"
    if isinstance(e, sympy.ceiling):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        if den.is_Integer and int(den) > 0:
            return f"-({_atom(sympy.expand(-num))}//{int(den)})"
    if isinstance(e, sympy.Max | sympy.Min):
        name = "max" if isinstance(e, sympy.Max) else "min"
        args = sorted(e.args, key=sympy.default_sort_key)
        out = _fmt(args[0])
        for a in args[1:]:
            out = f"{name}({out},{_fmt(a)})"
        return out
    raise TypeInferenceError(f"dimension {e} has no printed form (expressions are built from "
                             "+, -, *, // and max/min)")


def _term_order(t: sympy.Expr) -> tuple:
    return (t.is_number, sympy.default_sort_key(t))


def _atom(e: sympy.Expr) -> str:
    s = _fmt(e)
    if e.is_Integer and int(e) >= 0 or isinstance(e, sympy.Symbol | sympy.Max | sympy.Min):
        return s
    if isinstance(e, sympy.Mul) and not s.startswith("-"):
        return s
    return f"({s})"


def _floor_of_negative(e: sympy.Expr) -> bool:
    return isinstance(e, sympy.floor) and e.args[0].could_extract_minus_sign()


def _as_ceiling(e: sympy.Expr) -> sympy.Expr:
    return -sympy.ceiling(-e.args[0])


def parse_dim(text: str, declared: Mapping[str, SymDim]) -> Dim:
    """A printed dimension back, over the declared symbols; TypeInferenceError if the text
    is not of the grammar in the module docstring or names an undeclared symbol."""
    return _DimParser(text, declared).parse()


class _DimParser:
    """Recursive descent over: sum := prod (('+' | '-') prod)*;
    prod := unary (('*' unary) | ('//' INT))*; unary := '-' unary | atom;
    atom := INT | NAME | '(' sum ')' | ('max' | 'min') '(' sum ',' sum ')'
          | 'floordiv' '(' sum ',' INT ')' (JAX's spelling; smelt prints `//`)."""

    MAX_LENGTH = 1000

    def __init__(self, text: str, declared: Mapping[str, SymDim]) -> None:
        if len(text) > self.MAX_LENGTH:
            raise TypeInferenceError(f"dimension expression longer than {self.MAX_LENGTH} "
                                     "characters")
        self.text, self.declared, self.i, self.depth = text, declared, 0, 0

    def fail(self, why: str) -> None:
        raise TypeInferenceError(f"dimension {self.text!r}: {why}")

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.i)

    def take(self, s: str) -> bool:
        if self.peek(s):
            self.i += len(s)
            return True
        return False

    def parse(self) -> Dim:
        e = self.sum()
        if self.i != len(self.text):
            self.fail(f"unexpected {self.text[self.i:]!r}")
        return as_dim(e)

    def sum(self) -> sympy.Expr:
        e = self.prod()
        while True:
            if self.take("+"):
                e = e + self.prod()
            elif self.take("-"):
                e = e - self.prod()
            else:
                return e

    def prod(self) -> sympy.Expr:
        e = self.unary()
        while True:
            if self.take("//"):
                k = self.integer()
                if k == 0:
                    self.fail("division by zero")
                e = sympy.floor(e / k)
            elif self.take("*"):
                e = e * self.unary()
            else:
                return e

    def unary(self) -> sympy.Expr:
        if self.take("-"):
            return -self.unary()
        return self.atom()

    def atom(self) -> sympy.Expr:
        self.depth += 1
        if self.depth > 64:
            self.fail("nested too deep")
        try:
            if self.take("("):
                e = self.sum()
                if not self.take(")"):
                    self.fail("expected ')'")
                return e
            if self.take("floordiv("):  # JAX's spelling of a // k
                a = self.sum()
                if not self.take(","):
                    self.fail("floordiv takes two arguments")
                k = self.integer()
                if k == 0 or not self.take(")"):
                    self.fail("floordiv(a, k) needs a positive integer k and ')'")
                return sympy.floor(a / k)
            for name, fn in (("max(", sympy.Max), ("min(", sympy.Min)):
                if self.take(name):
                    a = self.sum()
                    if not self.take(","):
                        self.fail(f"{name[:-1]} takes two arguments")
                    b = self.sum()
                    if not self.take(")"):
                        self.fail("expected ')'")
                    return fn(a, b)
            if self.i < len(self.text) and self.text[self.i].isdigit():
                return sympy.Integer(self.integer())
            start = self.i
            while self.i < len(self.text) and (self.text[self.i].isalnum()
                                               or self.text[self.i] == "_"):
                self.i += 1
            name = self.text[start:self.i]
            if not name:
                self.fail(f"expected a number, a name or '(' at {self.text[self.i:]!r}")
            if name not in self.declared:
                self.fail(f"{name} is not declared (declare it in the graph header: "
                          f"`where {name} in [lo, hi]`)")
            return self.declared[name]
        finally:
            self.depth -= 1

    def integer(self) -> int:
        start = self.i
        while self.i < len(self.text) and self.text[self.i].isdigit():
            self.i += 1
        if start == self.i:
            self.fail(f"expected an integer at {self.text[self.i:]!r}")
        if self.i - start > 19:
            self.fail("integer too large")
        return int(self.text[start:self.i])


__all__ = ["MAX_SIZE", "RESERVED", "Dim", "SymDim", "as_dim", "at_smallest", "bind", "evaluate",
           "format_dim", "format_shape", "is_static", "largest", "least", "parse_dim",
           "size_range", "smallest", "specialize_value", "symbols"]
