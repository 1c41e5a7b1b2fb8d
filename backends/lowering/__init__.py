"""smelt ops -> TVM Relax: the lowering every target shares.

`to_relax(graph, target)` lowers a graph node by node through the lowering table
(registry.py), keyed by op and target: a target's own entry where it registered one (in its
folder, backends/<target>/), else the generic entry of this folder, which is reference-exact
for every target. Nothing here imports a target folder.

    registry.py    the table: `lowers`, `lowering`, `missing_lowerings`
    ops.py         float, integer and data-movement ops
    te_kernels.py  hand-written TE kernels where TVM's op disagrees with the reference
    math.py        elementwise math, bitwise ops, prod/any/all, scans and sort
    indexing.py    gather, scatter, index, index_put as TE kernels
    spatial.py     conv3d, conv_transpose, 3-d and adaptive pooling, resize, grid_sample
    quant.py       quantize, dequantize, requantize, integer contractions
    qarith.py      qadd, qmul, qmean, qlookup
    int8_sums.py   the uint8 x int8 form of integer contractions the targets' kernels share
    packed.py      linear_w4 and linear24 on their packed weights
    fused.py       fused ops as their unfused chains
    inlining.py    which producers the targets' schedules may inline
    module.py      `to_relax`
"""

from . import indexing, ops, packed, qarith, quant  # noqa: F401  (register the generic entries)

# isort: split
from . import spatial  # noqa: F401  (ir/ops/spatial.py, resample.py)

# isort: split
from . import math  # noqa: F401  (ir/ops/math.py)
from .module import to_relax
from .registry import LoweringError, lowering, lowers, missing_lowerings, target_entries

__all__ = ["LoweringError", "lowering", "lowers", "missing_lowerings", "target_entries",
           "to_relax"]
