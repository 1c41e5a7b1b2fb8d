"""The ahead-of-time call sequence: the lowered Relax `main` read as a list of kernel calls.

`lower_graph` (kernels_c.py) leaves `main` as one dataflow block of bindings, in order:
`call_tir(kernel, args)` runs a kernel that writes a fresh tensor (or a tuple of them);
`memory.view` and `reshape` re-read a tensor's bytes under another shape or dtype (an alias,
no copy); a tuple item names one output of a multi-output kernel; the final tuple lists the
outputs. Walking the bindings once gives the call steps and, for every tensor, its storage
root: a graph input, a weight, a graph output (the caller's buffer), or a buffer in the
arena whose lifetime (first write, last read, through any alias) the memory planner needs.

An output whose root cannot be the caller's buffer (it is an input, a weight, or already
another output's) is copied there by a `copy` step at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tvm import relax
from tvm.ir.expr import Constant

from smelt.ir.errors import SmeltError

from .memory_plan import Buffer


class AotError(SmeltError):
    """The lowered module has a binding the C call sequence cannot express."""


@dataclass(frozen=True)
class Root:
    """Storage: `kind` is input, output, weight or arena; `index` numbers inputs, outputs and
    weights; an arena root's place comes from the memory plan."""

    name: str
    kind: str
    nbytes: int
    index: int = -1


@dataclass(frozen=True)
class View:
    """A tensor as a kernel sees it: bytes of `root` from `offset`, with shape and dtype."""

    root: str
    shape: tuple[int, ...]
    dtype: str
    offset: int = 0


@dataclass(frozen=True)
class Step:
    """`kernel` called on `args`: `n_in` inputs, then the outputs it writes. Kind "copy" is
    args = (src, dst), a byte copy into an output buffer."""

    kind: str
    kernel: str
    args: tuple[View, ...]
    n_in: int
    elementwise: bool = False  # output i depends on input 0's element i only

    @property
    def reads(self) -> tuple[View, ...]:
        return self.args[: self.n_in]

    @property
    def writes(self) -> tuple[View, ...]:
        return self.args[self.n_in:]


@dataclass
class CallSequence:
    inputs: list[View] = field(default_factory=list)
    outputs: list[View] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    roots: dict[str, Root] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def buffers(self) -> list[Buffer]:
        """Every arena root with its lifetime in call steps, for `plan_memory`; an
        elementwise kernel's output may reuse its first input if that is read last there."""
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        hints: dict[str, str] = {}
        for i, step in enumerate(self.steps):
            for v in step.reads:
                last[v.root] = i
            for v in step.writes:
                first.setdefault(v.root, i)
            if step.elementwise and self._may_reuse(step.reads[0], step.writes[0]):
                hints[step.writes[0].root] = step.reads[0].root
        out = []
        for name, root in self.roots.items():
            if root.kind != "arena":
                continue
            start = first.get(name, 0)
            hint = hints.get(name)
            if hint is not None and last.get(hint) != start:
                hint = None  # the source is read again later: no reuse
            out.append(Buffer(name, root.nbytes, start, max(last.get(name, start), start),
                              hint))
        return out

    def _may_reuse(self, src: View, dst: View) -> bool:
        a, b = self.roots[src.root], self.roots[dst.root]
        return (a.kind == b.kind == "arena" and src.offset == dst.offset == 0
                and a.nbytes >= b.nbytes and bits(src.dtype) == bits(dst.dtype))


def bits(dtype: str) -> int:
    return 8 if dtype == "bool" else int("".join(c for c in dtype if c.isdigit()) or 8)


def nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * max(bits(dtype) // 8, 1)


def _tensor(ty) -> tuple[tuple[int, ...], str]:
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise AotError(f"the C target needs tensors of static shape, got {ty}")
    return tuple(int(d) for d in ty.shape.values), str(ty.dtype)


def _view_offset(call: relax.Call) -> int:
    """A memory.view's relative byte offset: an empty tuple (none) or a constant."""
    arg = call.args[-1]
    if isinstance(arg, relax.Tuple) and not arg.fields:
        return 0
    try:
        return int(arg.value)
    except (AttributeError, TypeError, ValueError):
        raise AotError(f"memory.view with a byte offset {arg} that is not a constant") \
            from None


def call_sequence(main: relax.Function, elementwise: set[str]) -> CallSequence:
    """The call steps of `main`; kernels named in `elementwise` may run in place."""
    return _Walker(elementwise).walk(main)


class _Walker:
    def __init__(self, elementwise: set[str]) -> None:
        self.elementwise = elementwise
        self.seq = CallSequence()
        self.env: dict[relax.Var, View | tuple[View, ...]] = {}
        self.weights: dict[Constant, View] = {}  # TVM objects hash by identity

    def walk(self, main: relax.Function) -> CallSequence:
        seq = self.seq
        for i, p in enumerate(main.params):
            shape, dtype = _tensor(p.ty)
            seq.roots[f"in{i}"] = Root(f"in{i}", "input", nbytes(shape, dtype), i)
            self.env[p] = View(f"in{i}", shape, dtype)
            seq.inputs.append(self.env[p])
        for block in main.body.blocks:
            for b in block.bindings:
                self.env[b.var] = self.bind(b)
        result = main.body.body
        if isinstance(result, relax.Tuple):
            outs = [self.operand(f) for f in result.fields]
        elif isinstance(self.env.get(result), tuple):
            outs = list(self.env[result])
        else:
            outs = [self.operand(result)]
        self.bind_outputs(outs)
        return seq

    def operand(self, e: relax.Expr) -> View:
        if isinstance(e, Constant):
            if e not in self.weights:
                shape, dtype = _tensor(e.ty)  # the value's numpy shape of a 0-d one is (1,)
                value = np.ascontiguousarray(e.value.numpy()).reshape(shape)
                k = len(self.seq.weights)
                self.seq.roots[f"w{k}"] = Root(f"w{k}", "weight", value.nbytes, k)
                self.seq.weights.append(value)
                self.weights[e] = View(f"w{k}", shape, dtype)
            return self.weights[e]
        v = self.env.get(e)
        if not isinstance(v, View):
            raise AotError(f"operand {e} is not a tensor the call sequence knows")
        return v

    def bind(self, b: relax.Binding) -> View | tuple[View, ...]:
        v = b.value
        if isinstance(v, relax.Tuple):
            return tuple(self.operand(f) for f in v.fields)
        if isinstance(v, relax.TupleGetItem):
            parts = self.env.get(v.tuple_value)
            if not isinstance(parts, tuple):
                raise AotError(f"{b.var.name_hint}: tuple item of a non-tuple")
            return parts[v.index]
        if isinstance(v, (relax.Var, Constant)):
            return self.operand(v)
        op = getattr(v.op, "name", "") if isinstance(v, relax.Call) else ""
        if op == "relax.call_tir":
            return self.call_tir(b, v)
        if op in ("relax.memory.view", "relax.reshape"):
            src = self.operand(v.args[0])
            shape, dtype = _tensor(b.var.ty)
            offset = _view_offset(v) if op == "relax.memory.view" else 0
            return View(src.root, shape, dtype, src.offset + offset)
        raise AotError(f"binding {b.var.name_hint} = {op or type(v).__name__}: the C target "
                       "emits only kernel calls, views and reshapes; lower it to a kernel")

    def call_tir(self, b: relax.Binding, call: relax.Call) -> View | tuple[View, ...]:
        seq = self.seq
        kernel = call.args[0].name_hint
        args = call.args[1]
        ins = [self.operand(a) for a in (args.fields if isinstance(args, relax.Tuple)
                                         else [args])]
        tys = list(b.var.ty.fields) if isinstance(b.var.ty, relax.TupleType) else [b.var.ty]
        outs = []
        for k, ty in enumerate(tys):
            shape, dtype = _tensor(ty)
            name = f"t{len(seq.steps)}" + (f"_{k}" if len(tys) > 1 else "")
            seq.roots[name] = Root(name, "arena", nbytes(shape, dtype))
            outs.append(View(name, shape, dtype))
        inplace = kernel in self.elementwise and len(outs) == 1 and bool(ins)
        seq.steps.append(Step("call", kernel, (*ins, *outs), len(ins), inplace))
        return outs[0] if len(tys) == 1 else tuple(outs)

    def bind_outputs(self, outs: list[View]) -> None:
        """An output computed into its own arena root is computed straight into the caller's
        buffer; any other is copied there at the end."""
        seq = self.seq
        claimed: set[str] = set()
        copies = []
        for k, v in enumerate(outs):
            root = seq.roots[v.root]
            size = nbytes(v.shape, v.dtype)
            if (root.kind == "arena" and v.root not in claimed and v.offset == 0
                    and root.nbytes == size):
                seq.roots[v.root] = Root(v.root, "output", size, k)
                claimed.add(v.root)
                seq.outputs.append(v)
                continue
            name = f"out{k}"
            seq.roots[name] = Root(name, "output", size, k)
            dst = View(name, v.shape, v.dtype)
            seq.outputs.append(dst)
            copies.append(Step("copy", "memcpy", (v, dst), 1))
        seq.steps.extend(copies)
