"""Op definitions. Importing this package fills `smelt.ir.op_table.OPS`."""

from . import elementwise, nn, norm, pool, reduce, shape, sources  # noqa: F401
from .fused import fused_matmul as _fused_matmul  # noqa: F401  (registers fused ops)
