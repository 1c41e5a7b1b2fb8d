"""Op definitions. Importing this package fills `smelt.ir.op_table.OPS`."""

from . import elementwise, fused, nn, norm, pool, qarith, quant, reduce, shape, sources  # noqa: F401
