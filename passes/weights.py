"""Weight helpers shared by the passes that compute new constants from old ones (batch-norm
folding, equalization, smoothing migration, 2:4 packing, 4-bit packing, sparsification).

- Arithmetic in float64, stored once: `stored(value, dtype)` rounds a float64 result to the
  weight dtype a single time (None when it is not finite there); `bias64(layer)` reads a
  layer's bias in float64 (zeros when it has none). `FLOATS` are the weight dtypes these
  passes rewrite.
- Per-channel layer algebra (conv2d with any groups, and linear): `scale_inputs` scales a
  weight's input channels, `input_shift_bias` is what a constant shift of the input channels
  adds to the output.
- One folded node per match: `memoized(key, build)` returns the node built the first time for
  the same key, so a rule that fires twice on one match builds its new constants once
  (constants are identified by object, so building them twice would give two different
  graphs).
- Names: `derive(new, source)` records that constant `new` was computed from `source`, and
  `name_derived(graph)` gives unnamed derived constants their sources' names (side table
  only), so reports keep saying `stem.0.weight` after a pass rewrote that weight.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import numpy_dtype
from smelt.rewrite.rule import NoMatch

FLOATS = ("float16", "float32", "float64")


# -- float64 arithmetic, stored once ------------------------------------------------------------
def bias64(layer: Node) -> np.ndarray:
    """The bias of a conv2d / linear `layer` in float64 (zeros when it has none)."""
    if len(layer.inputs) > 2:
        return np.asarray(layer.inputs[2].value, np.float64)
    return np.zeros(layer.inputs[1].shape[0])


def stored(value: np.ndarray, dtype: str) -> Node | None:
    """A float64 result rounded once to `dtype`, as a constant (None: not finite there)."""
    array = value.astype(numpy_dtype(dtype))
    return Node.constant(array, dtype) if np.all(np.isfinite(array)) else None


# -- per-channel layer algebra ------------------------------------------------------------------
def input_shift_bias(layer: Node, t: np.ndarray) -> np.ndarray:
    """What a constant shift t of `layer`'s input channels adds to its output (float64):
    layer(x + t) = layer(x) + this, for linear and unpadded conv2d (any groups)."""
    wv = np.asarray(layer.inputs[1].value, np.float64)
    if layer.op == "linear":
        return wv @ t
    g = layer.attrs["groups"]
    o, cg = wv.shape[:2]
    return np.einsum("gocij,gc->go", wv.reshape(g, o // g, cg, *wv.shape[2:]),
                     t.reshape(g, cg)).reshape(o)


def scale_inputs(layer: Node, s: np.ndarray, wv: np.ndarray | None = None) -> np.ndarray:
    """`layer`'s weight (or `wv`, an array of its shape) in float64 with input channel c
    scaled by s[c] (any groups)."""
    if wv is None:
        wv = np.asarray(layer.inputs[1].value, np.float64)
    if layer.op == "linear":
        return wv * s[None, :]
    g = layer.attrs["groups"]
    o, cg = wv.shape[:2]
    view = wv.reshape(g, o // g, cg, *wv.shape[2:]) * s.reshape(g, 1, cg, 1, 1)
    return view.reshape(wv.shape)


# -- one folded node per match ------------------------------------------------------------------
_MEMO: OrderedDict[tuple, Node | NoMatch] = OrderedDict()
_MEMO_SIZE = 256


def memoized(key: tuple, build: Callable[[], Node | NoMatch]) -> Node | NoMatch:
    """One folded node per (rule, matched nodes): folding the same match twice gives the same
    node (new weight constants are identified by object, so they are built only once)."""
    hit = _MEMO.get(key)
    if hit is None:
        hit = _MEMO[key] = build()
        if len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end(key)
    return hit


# -- names of derived constants -----------------------------------------------------------------
_DERIVED: weakref.WeakKeyDictionary[Node, weakref.ref] = weakref.WeakKeyDictionary()


def derive(new: Node, source: Node | None) -> None:
    """Remember that constant `new` was computed from constant `source` (for its name)."""
    if source is not None:
        _DERIVED[new] = weakref.ref(source)


def name_derived(graph: Graph) -> Graph:
    """Unnamed constants computed from named ones take their names (side table only), so
    reports keep saying `stem.0.weight` after folding."""
    names = {}
    for n in graph.constants():
        ref = _DERIVED.get(n) if n not in graph.names else None
        source = ref() if ref is not None else None
        if source is not None and source in graph.names:
            names[n] = graph.names[source]
    return graph.replace(names=names) if names else graph
