"""Hand-written TE kernels for the ops whose TVM lowering disagrees with the reference
interpreter; the generic entries (ops.py, quant.py) emit them with `bb.call_te`.

What TVM 0.27 gets wrong, measured against the interpreter (tests/test_backend_ops.py):
- NaN: TIR's max/min compile to `a > b ? a : b`, which drops a NaN in `a` (maximum, relu,
  relu6, clamp, hardsigmoid, reduce_max/min, max_pool2d, argmax), and `!=` to an ordered
  compare (NaN != x is false); the reference follows IEEE and numpy.
- Max reductions start from the dtype's lowest finite value, not -inf: the max of all -inf
  is -3.4e38, so is a max-pool window wholly in padding, and argmax of all -inf is -1.
- Its simplifier folds float `x * 0` and `x - x` to 0 and `x != x` to false (-inf * 0 and
  NaN * 0 are NaN); `isnan` and `isinf` survive it.
- tanh is (1 - e^-2x) / (1 + e^-2x), whose cancellation costs eps / 2|x| near 0 (16 ulp at
  x = 0.01 in float32, more below).
- power takes floats only.
Elementwise kernels are one TE block each, so FuseOps still folds them into a producer's
tile as an epilogue. Expressions avoid nesting deeply: TVM inlines Let bindings and its
visitors recurse, so a 64-deep chain of squarings overflowed the stack.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import te, tirx
from tvm.script import tirx as T

from smelt.ir.types import is_float, numpy_dtype


def const(value: float, dtype: str) -> tirx.PrimExpr:
    return tirx.const(value, dtype)


def dtype_of(e: tirx.PrimExpr) -> str:
    return str(e.ty)


def _at(t: te.Tensor, idx: tuple, shape: tuple[int, ...]) -> tirx.PrimExpr:
    """t read at output index `idx` under numpy broadcasting (t's axes align right). Only a
    broadcast axis reads index 0: an axis of size 1 in both keeps the loop variable, so TVM
    sees an elementwise kernel (which it fuses into a contraction's epilogue), not a
    broadcast (which it does not)."""
    off = len(idx) - len(t.shape)
    return t(*(0 if int(d) == 1 and shape[off + i] != 1 else idx[off + i]
               for i, d in enumerate(t.shape)))


def pointwise(fn: Callable[..., tirx.PrimExpr], shape: tuple[int, ...], name: str):
    """A TE function for `bb.call_te`: out[i] = fn(x0[i], x1[i], ...), operands broadcast."""
    def compute(*ts: te.Tensor) -> te.Tensor:
        return te.compute(shape, lambda *i: fn(*(_at(t, i, shape) for t in ts)), name=name)

    return compute


# -- scalar formulas -----------------------------------------------------------------------
def maximum(a, b):
    """np.maximum: a NaN in either operand wins."""
    if "float" not in dtype_of(a):
        return tirx.max(a, b)
    return tirx.Select(tirx.Or(tirx.isnan(b), b > a), b, a)


def minimum(a, b):
    if "float" not in dtype_of(a):
        return tirx.min(a, b)
    return tirx.Select(tirx.Or(tirx.isnan(b), b < a), b, a)


def not_equal(a, b):
    """IEEE's unordered !=: true when either side is NaN."""
    return tirx.Or(tirx.NE(a, b), tirx.Or(tirx.isnan(a), tirx.isnan(b)))


def clip(x, lo, hi):
    """min(max(x, lo), hi), either bound optional; a NaN fails both compares and stays."""
    if lo is not None:
        x = tirx.Select(x < lo, lo, x)
    if hi is not None:
        x = tirx.Select(x > hi, hi, x)
    return x


def bound(value: float | None, dtype: str):
    """A clamp bound as a constant of `dtype`; integer bounds saturate to the dtype's range."""
    if value is None:
        return None
    if not is_float(dtype):
        info = np.iinfo(numpy_dtype(dtype))
        value = int(min(max(value, info.min), info.max))
    return const(value, dtype)


def relu(x):
    return clip(x, const(0, dtype_of(x)), None)


def relu6(x):
    return clip(x, const(0, dtype_of(x)), const(6, dtype_of(x)))


def hardsigmoid(x):  # relu6(x + 3) / 6, op for op as the reference
    return relu6(x + const(3, dtype_of(x))) / const(6, dtype_of(x))


def hardswish(x):  # x * relu6(x + 3) / 6
    return x * relu6(x + const(3, dtype_of(x))) / const(6, dtype_of(x))


def leaky_relu(alpha: float) -> Callable:
    """x if x >= 0 else alpha x, alpha x as the float64 attribute gives it: rounded once
    (float16 goes through float32), and +-inf * alpha exact even where alpha underflows the
    dtype (TVM would fold x * 0 to 0, and -inf * 0 is NaN)."""
    def fn(x):
        dt = dtype_of(x)
        wide = "float64" if dt == "float64" else "float32"
        if float(np.asarray(alpha, wide)) == 0:
            finite = const(0, dt)
        else:
            finite = (x.astype(wide) * const(alpha, wide)).astype(dt)
        infinite = const(np.nan, dt) if alpha == 0 else (x if alpha > 0 else -x)
        below = tirx.Select(tirx.isinf(x), infinite, finite)
        return tirx.Select(tirx.Or(x >= const(0, dt), tirx.isnan(x)), x, below)

    return fn


def tanh(x):
    """tanh(x) = sign(x) e / (e + 2) with e = expm1(2|x|), and expm1 by Kahan's formula
    expm1(y) = (u - 1) y / log(u), u = exp(y), exact when u rounds to 1 (the ratio's
    rounding errors cancel: Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
    sec. 1.14.1). With libm's exp and log (LLVM calls them) the result is within 2 ulp in
    float32 and float64 (measured over 5e5 points, tiny to 30). |x| is capped at 20, where
    tanh rounds to 1 even in float64 and e stays finite; a NaN fails every compare and
    stays NaN; copysign keeps -0. float16 and bfloat16 compute in float32, rounding once.

    Written without Let, so exp is evaluated at each of u's three uses (TVM's CSE does not
    share calls): the kernel is 2x slower than with y, u, e bound by Lets (1M float32: 12 vs
    6.5 ms), but a Let-bound tanh inlined into a consumer that reads it twice (x * x, gelu,
    leaky_relu) defines the same variable twice, and TVM refuses the kernel as ill-formed,
    which ConvertSSA does not repair (its vectorizer then rejects the renamed Lets)."""
    dt = dtype_of(x)
    wide = "float64" if dt == "float64" else "float32"
    v = x.astype(wide) if dt != wide else x
    one, two, cap = const(1, wide), const(2, wide), const(20, wide)
    y = two * tirx.Select(tirx.abs(v) > cap, cap, tirx.abs(v))
    u = tirx.exp(y)
    e = tirx.Select(tirx.EQ(u, one), y, (u - one) * y / tirx.log(u))
    out = tirx.copysign(e / (e + two), v)
    return out.astype(dt) if wide != dt else out


# -- kernels -------------------------------------------------------------------------------
def int_pow_func(size: int, dtype: str) -> tirx.PrimFunc:
    """out = a ** e over flat buffers by binary exponentiation: a loop over e's bits that
    multiplies the result by a ** 2^k where bit k is set. Products wrap modulo 2^bits, so
    this equals numpy's repeated (wrapping) multiplication. A loop, not a TE expression:
    unrolled, the squarings nest 64 deep."""
    bits = numpy_dtype(dtype).itemsize * 8

    @T.prim_func(private=True, s_tir=True)
    def int_pow(a: T.Buffer((size,), dtype), e: T.Buffer((size,), dtype),
                out: T.Buffer((size,), dtype)):
        T.func_attr({"tirx.noalias": True})
        for i in range(size):
            with T.sblock("int_pow"):
                vi = T.axis.spatial(size, i)
                acc = T.sblock_alloc_buffer((2,), dtype, scope="local")  # result, a ** 2^k
                acc[0] = T.cast(1, dtype)
                acc[1] = a[vi]
                for k in range(bits):
                    if (e[vi] >> T.cast(k, dtype)) & T.cast(1, dtype) == T.cast(1, dtype):
                        acc[0] = acc[0] * acc[1]
                    acc[1] = acc[1] * acc[1]
                out[vi] = acc[0]

    return int_pow


def extremum_reducer(dtype: str, largest: bool):
    """NaN-propagating max (min) whose identity is -inf (+inf); integer types use TVM's."""
    if not is_float(dtype):
        return te.max if largest else te.min

    def combine(a, b):
        return tirx.Select(tirx.Or(tirx.isnan(a), a > b if largest else a < b), a, b)

    def identity(t):
        return const(-np.inf if largest else np.inf, t)

    return te.comm_reducer(combine, identity, name="nan_max" if largest else "nan_min")


def reduce_extremum(x: te.Tensor, axes: tuple[int, ...], keepdims: bool, largest: bool):
    """max (min) over `axes` (sorted, non-negative)."""
    ks = {a: te.reduce_axis((0, x.shape[a]), f"k{a}") for a in axes}
    red = extremum_reducer(str(x.dtype), largest)
    keep = [a for a in range(len(x.shape)) if a not in ks]
    shape = [1 if a in ks else x.shape[a] for a in range(len(x.shape))] if keepdims \
        else [x.shape[a] for a in keep]

    def body(*idx):
        it = iter(idx if not keepdims else [idx[a] for a in keep])
        src = [ks[a] if a in ks else next(it) for a in range(len(x.shape))]
        return red(x(*src), axis=list(ks.values()))

    return te.compute(shape, body, name="reduce_max" if largest else "reduce_min")


def argmax(x: te.Tensor, axis: int, keepdims: bool) -> te.Tensor:
    """The first index of the maximum, as int64; NaN ranks above every number (numpy's
    rule). Index -1 marks the identity (no element yet), whatever value sits beside it."""
    floaty = "float" in str(x.dtype)

    def combine(lhs, rhs):
        (li, lv), (ri, rv) = lhs, rhs
        above, tie = rv > lv, tirx.EQ(rv, lv)
        if floaty:
            nan_r, nan_l = tirx.isnan(rv), tirx.isnan(lv)
            above = tirx.Or(above, tirx.And(nan_r, tirx.Not(nan_l)))
            tie = tirx.Or(tie, tirx.And(nan_r, nan_l))
        take = tirx.Or(li < 0, tirx.And(ri >= 0, tirx.Or(above, tirx.And(tie, ri < li))))
        return tirx.Select(take, ri, li), tirx.Select(take, rv, lv)

    red = te.comm_reducer(combine, lambda ti, tv: (const(-1, ti), const(0, tv)), name="argmax")
    k = te.reduce_axis((0, x.shape[axis]), "k")
    shape = list(x.shape)
    shape[axis:axis + 1] = [1] if keepdims else []

    def body(*idx):
        src = list(idx)
        src[axis:axis + keepdims] = [k]
        value = x(*src)
        if str(x.dtype) == "bool":  # TIR orders no bools
            value = value.astype("int8")
        return red((k.var.astype("int64"), value), axis=k)

    return te.compute(shape, body, name="argmax")[0]


def max_pool2d(x: te.Tensor, k, s, d, pads, out_hw) -> te.Tensor:
    """Max over each NCHW window; padding ((top, bottom), (left, right)), ceil mode's
    overhang included, reads as -inf (the dtype's lowest value for integers)."""
    dtype = str(x.dtype)
    fill = const(-np.inf if is_float(dtype) else int(np.iinfo(numpy_dtype(dtype)).min), dtype)
    (top, bottom), (left, right) = pads
    xp = x
    if top or bottom or left or right:
        n, c, h, w = (int(v) for v in x.shape)

        def pad(b, ch, i, j):
            inside = tirx.all(i >= top, i < h + top, j >= left, j < w + left)
            return tirx.if_then_else(inside, x[b, ch, i - top, j - left], fill)

        xp = te.compute((n, c, h + top + bottom, w + left + right), pad, name="pad")
    ry, rx = te.reduce_axis((0, k[0]), "ry"), te.reduce_axis((0, k[1]), "rx")
    red = extremum_reducer(dtype, largest=True)
    return te.compute(
        (*x.shape[:2], *out_hw),
        lambda b, ch, i, j: red(xp[b, ch, i * s[0] + ry * d[0], j * s[1] + rx * d[1]],
                                axis=[ry, rx]),
        name="max_pool2d")
