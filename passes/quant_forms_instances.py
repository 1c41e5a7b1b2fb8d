"""Random instances of the quant-forms rules (hypothesis builders), for the rule verifier;
imported only when verification runs. Batch norms as fold-bn's instances draw them; average
pooling with kernels 1-3, strides 1-3, padding counted or not, and ceil mode on or off (the
rule refuses the draws whose windows do not all divide by kh kw)."""

from __future__ import annotations

from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .batchnorm_instances import draw_batch_norm, draw_conv_input
from .qdq_instances import well_typed


def batch_norm(draw: st.DrawFn) -> Graph:
    """batch_norm(x), x NCHW: batch_norm_as_depthwise."""
    xin = draw_conv_input(draw)
    return Graph([xin], [draw_batch_norm(draw, xin)])


@well_typed
def avg_pool(draw: st.DrawFn) -> Graph:
    """avg_pool2d(x): avg_pool_as_depthwise."""
    xin = draw_conv_input(draw)
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    pool = Node.make("avg_pool2d", (xin,), kernel=k, stride=(draw(st.integers(1, 3)),) * 2,
                     padding=pad, ceil_mode=draw(st.booleans()),
                     count_include_pad=draw(st.booleans()) or not any(pad))
    return Graph([xin], [pool])
