"""Which of torch's core ATen ops the torch.export frontend maps, and the few it leaves out.

torch tags the operators of its core ATen opset (`torch.Tag.core`): the set an exported,
decomposed inference graph is made of. smelt's frontend maps each such op packet, by name, in
its `ATEN` table (ir/torch_aten.py and the ir/aten_*.py families), except those listed in
`OUT_OF_SCOPE` with the reason. A test keeps the two complete: an op torch adds to the core
set, or one a smelt release drops, fails it until it is mapped or listed. Meeting an
out-of-scope op, the frontend raises `UnsupportedOpError` with that reason.

    coverage()  -> {"core": n, "mapped": [...], "out_of_scope": {...}, "missing": [...]}
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

BACKWARD = ("a gradient op: smelt compiles inference graphs (export the model in eval mode, "
            "under torch.no_grad())")
RANDOM = ("a random op: an inference graph with random values has no reference to check "
          "against; export the model in eval mode (dropout then disappears) or pass the random "
          "tensor as an input")
DATA_DEPENDENT = ("its output's shape depends on the values (smelt's shapes are known at "
                  "compile time); compute it outside the graph, or use a fixed-size form "
                  "(e.g. a mask and `where` instead of `nonzero`)")
COMPLEX = "complex tensors: smelt has no complex dtypes; keep FFTs outside the graph"
IN_PLACE = ("resizes its input's storage in place; an exported (functionalized) inference graph "
            "has no such mutation: build the tensor at its final size")
LAYOUT_QUERY = ("a question about memory layout answered while tracing (it returns a SymBool, "
                "no tensor); smelt's tensors are always contiguous")

#: core ATen op packets smelt does not map, and why
OUT_OF_SCOPE: dict[str, str] = {
    "_adaptive_avg_pool2d_backward": BACKWARD,
    "avg_pool2d_backward": BACKWARD,
    "convolution_backward": BACKWARD,
    "embedding_dense_backward": BACKWARD,
    "max_pool2d_with_indices_backward": BACKWARD,
    "native_group_norm_backward": BACKWARD,
    "native_layer_norm_backward": BACKWARD,
    "rand": RANDOM,
    "randn": RANDOM,
    "randperm": RANDOM,
    "native_dropout": RANDOM,
    "nonzero": DATA_DEPENDENT,
    "_fft_r2c": COMPLEX,
    "_fft_c2r": COMPLEX,
    "resize_": IN_PLACE,
    "sym_is_contiguous": LAYOUT_QUERY,
}


@cache
def core_packets() -> frozenset[str]:
    """The names of the aten op packets with an overload tagged `core`. Taken from the
    dispatcher's registry: `dir(torch.ops.aten)` lists only the packets touched so far."""
    names = set()
    registered = {op.split("::", 1)[1].split(".", 1)[0]
                  for op in torch._C._dispatch_get_all_op_names() if op.startswith("aten::")}
    for name in sorted(registered):
        packet = getattr(torch.ops.aten, name, None)
        if not isinstance(packet, torch._ops.OpOverloadPacket):
            continue
        if any(torch.Tag.core in getattr(packet, o).tags for o in packet.overloads()):
            names.add(name)
    return frozenset(names)


def coverage() -> dict[str, Any]:
    """How the frontend covers the core set: mapped packets, the out-of-scope ones, and what
    is neither (a test keeps `missing` empty)."""
    from .torch_aten import ATEN

    core = core_packets()
    mapped = sorted(core & set(ATEN))
    return {"core": len(core), "mapped": mapped, "in_scope": len(core) - len(OUT_OF_SCOPE),
            "out_of_scope": dict(sorted(OUT_OF_SCOPE.items())),
            "missing": sorted(core - set(ATEN) - set(OUT_OF_SCOPE))}
