"""Op definitions. Importing this package fills `smelt.ir.op_table.OPS`."""

from . import (  # noqa: F401  (each module registers its ops)
    elementwise,
    fused,
    indexing,  # gather, scatter, index, index_put
    int4,  # linear_w4: 4-bit packed weights
    lookup,  # qlookup: 8-bit tables
    math,  # inverse and hyperbolic functions, bitwise ops, prod/any/all, scans, sort
    nn,
    norm,
    pool,
    qarith,
    quant,
    reduce,
    resample,  # resize, grid_sample
    shape,
    sources,
    sparse,  # linear24: 2:4-compressed weights
    spatial,  # conv3d, conv_transpose, 3-d and adaptive max pooling
)
