"""smelt.layer_errors: layers aligned across pipelines, errors that start where a change is."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import smelt
from smelt.rewrite.equivalence import sample_inputs
from smelt.rewrite.layer_errors import LayerErrorsError, align, layers
from smelt.zoo import ZOO


@pytest.fixture(scope="module")
def cnn():
    entry = ZOO["residual_cnn"]
    model, args = entry.build(), entry.inputs()
    graph = smelt.Pipeline.parse("fold-bn")(smelt.trace(model, args))
    return model, args, graph


def test_a_graph_against_itself_has_no_error(cnn):
    _, _, graph = cnn
    errs = smelt.layer_errors(graph, graph, sample_inputs(graph, 2))
    assert len(errs) == len(layers(graph)) > 5 and errs.unmatched == 0
    assert all(e.relative == 0 and e.max_abs == 0 and math.isinf(e.sqnr_db) for e in errs)


def test_error_starts_at_the_changed_layer(cnn):
    model, args, graph = cnn
    changed = ZOO["residual_cnn"].build()
    convs = [m for m in changed.modules() if isinstance(m, torch.nn.Conv2d)]
    k = 3
    with torch.no_grad():
        convs[k].weight.mul_(1.01)
    other = smelt.Pipeline.parse("fold-bn")(smelt.trace(changed, args))
    errs = list(smelt.layer_errors(graph, other, sample_inputs(graph, 2)))
    assert [e.relative == 0 for e in errs[:k]] == [True] * k
    # y = 1.01 W x + b against W x + b: 1% of the W x part of the output (the bias from
    # the folded batch norm is unchanged), so just under 1%
    assert 0.005 < errs[k].relative <= 0.01
    users, below, todo = graph.users(), set(), [layers(graph)[k]]
    while todo:  # the layers downstream of layer k see its error, the others none
        for u in users.get(todo.pop(), []):
            if u not in below:
                below.add(u)
                todo.append(u)
    after = [(e.relative > 0, layers(graph)[e.index] in below) for e in errs[k + 1:]]
    assert all(err == downstream for err, downstream in after) and any(d for _, d in after)


def test_quantized_layers_align_through_qdq_pairs(cnn):
    _, args, graph = cnn
    batches = [tuple(a.numpy() for a in args)]
    qdq = smelt.Pipeline.parse("quantize(scheme=w8a8)")(graph, calibration=batches)
    pairs, unmatched = align(graph, qdq)
    assert len(pairs) == len(layers(graph)) and unmatched == 0
    errs = smelt.layer_errors(graph, qdq, batches)
    # 8-bit activations and weights: each layer within a few percent, none exact
    assert all(0 < e.relative < 0.1 for e in errs), [e.relative for e in errs]


def test_a_changed_layer_shape_is_unmatched_not_compared(cnn):
    _, args, graph = cnn
    batches = [tuple(a.numpy() for a in args)]
    pruned = smelt.Pipeline.parse("prune-channels(ratio=0.5)")(graph, calibration=batches)
    pairs, unmatched = align(graph, pruned)
    assert unmatched > 0 and all(r.shape == c.shape for r, c in pairs)


def test_bad_batches_are_typed_errors(cnn):
    _, _, graph = cnn
    with pytest.raises(LayerErrorsError, match="no batches"):
        smelt.layer_errors(graph, graph, [])
    with pytest.raises(LayerErrorsError, match="one array per input"):
        smelt.layer_errors(graph, graph, [(np.zeros(1), np.zeros(1))])
