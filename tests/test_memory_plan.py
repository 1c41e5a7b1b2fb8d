"""The static memory planner of the microcontroller backend (backends/mcu/memory_plan.py).

Validity is checked here independently of the planner's own `plan_conflicts`: byte by byte
over aligned extents, step by step over lifetimes.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smelt.backends.mcu.memory_plan import (
    Buffer,
    MemoryPlan,
    MemoryPlanError,
    plan_conflicts,
    plan_memory,
)
from smelt.ir.errors import SmeltError


def aligned(n: int, a: int) -> int:
    return -(-n // a) * a


def chain_of(plan: MemoryPlan) -> dict[str, str]:
    head = {b.name: b.name for b in plan.buffers}
    for b, a in plan.inplace:
        head[b] = head[a]
    return head


def assert_valid(buffers: list[Buffer], plan: MemoryPlan, alignment: int) -> None:
    """Every offset aligned, in the arena; no two buffers live at one step share a byte unless
    the plan honours an in-place chain joining them (and then they share an offset)."""
    by_name = {b.name: b for b in buffers}
    assert set(plan.offsets) == set(by_name)
    for b, a in plan.inplace:
        assert by_name[b].inplace_of == a
        assert plan.offsets[a] == plan.offsets[b]
    head = chain_of(plan)
    for b in buffers:
        off = plan.offsets[b.name]
        assert off % alignment == 0 and off >= 0
        assert off + aligned(b.size, alignment) <= plan.arena
    last = max((b.end for b in buffers), default=-1)
    for step in range(last + 1):
        owner: dict[int, str] = {}
        for b in buffers:
            if not b.start <= step <= b.end:
                continue
            lo = plan.offsets[b.name]
            for byte in range(lo // alignment, (lo + aligned(b.size, alignment)) // alignment):
                other = owner.setdefault(byte, b.name)
                assert other == b.name or head[other] == head[b.name], (
                    f"{other} and {b.name} share bytes at step {step}")
    if buffers:
        assert plan.arena == max(plan.offsets[b.name] + aligned(b.size, alignment)
                                 for b in buffers)


def live_peak(buffers: list[Buffer], alignment: int) -> int:
    last = max((b.end for b in buffers), default=-1)
    return max((sum(aligned(b.size, alignment) for b in buffers if b.start <= t <= b.end)
                for t in range(last + 1)), default=0)


@st.composite
def interval_sets(draw, inplace: bool = False, max_size: int = 4096):
    n = draw(st.integers(0, 14))
    buffers: list[Buffer] = []
    reused: set[str] = set()
    for i in range(n):
        start = draw(st.integers(0, 12))
        end = start + draw(st.integers(0, 6))
        size = draw(st.integers(0, max_size))
        src = None
        if inplace and draw(st.booleans()):
            cands = [b.name for b in buffers if b.end == start and b.name not in reused]
            if cands:
                src = draw(st.sampled_from(cands))
                reused.add(src)
        buffers.append(Buffer(f"t{i}", size, start, end, src))
    return buffers


# -- properties ---------------------------------------------------------------------------------
@given(interval_sets(), st.sampled_from([1, 4, 16, 64]))
def test_plan_is_valid_and_between_bound_and_naive(buffers, alignment) -> None:
    plan = plan_memory(buffers, alignment)
    assert_valid(buffers, plan, alignment)
    assert plan_conflicts(plan) == []
    assert plan.lower_bound == live_peak(buffers, alignment)
    assert plan.lower_bound <= plan.arena <= plan.naive
    assert plan.naive == sum(aligned(b.size, alignment) for b in buffers)


@given(interval_sets(inplace=True))
def test_plan_with_inplace_hints_is_valid(buffers) -> None:
    plan = plan_memory(buffers, 16)
    assert_valid(buffers, plan, 16)
    assert plan_conflicts(plan) == []
    assert plan.lower_bound <= plan.arena <= plan.naive
    # the bound may count a pair once only where the planner could honour it
    assert plan.lower_bound <= live_peak(buffers, 16)


@given(interval_sets(inplace=True))
def test_plan_is_deterministic(buffers) -> None:
    assert plan_memory(list(buffers)) == plan_memory(list(buffers))


@given(interval_sets(max_size=0).map(lambda bs: [Buffer(b.name, 48, b.start, b.end)
                                                 for b in bs]))
def test_equal_sizes_reach_the_bound(buffers) -> None:
    """Equal sizes make it interval-graph colouring, where the clique size is reachable."""
    plan = plan_memory(buffers, 16)
    assert plan.arena == plan.lower_bound


# -- known cases --------------------------------------------------------------------------------
def test_known_case_reaches_the_optimum() -> None:
    # an inverted residual: x is read again by the add at step 3, so at step 1 x, e and d are
    # all live; the optimum is that peak, reached by putting p and y where e was
    bufs = [Buffer("x", 32, 0, 3), Buffer("e", 96, 0, 1), Buffer("d", 96, 1, 2),
            Buffer("p", 32, 2, 3), Buffer("y", 32, 3, 4)]
    plan = plan_memory(bufs, 16)
    assert plan.lower_bound == 32 + 96 + 96 == 224
    assert plan.arena == 224
    assert plan.naive == 288
    assert_valid(bufs, plan, 16)


def test_naive_order_would_be_worse_than_the_plan() -> None:
    # placing by start (a, b, c) puts c above b; by size, c goes under b into a's old place
    bufs = [Buffer("a", 64, 0, 0), Buffer("b", 16, 0, 1), Buffer("c", 64, 1, 1)]
    plan = plan_memory(bufs, 16)
    assert plan.arena == plan.lower_bound == 80
    assert plan.offsets["a"] == plan.offsets["c"]


def test_layer_chain_alternates_arena_ends() -> None:
    # each layer's output overlaps its input only; greedy by size puts b4 and then b2 at the
    # bottom, which leaves b3 no room below 90 KiB; the search alternates ends and reaches
    # the bound
    k = 1024
    bufs = [Buffer("q0", 27 * k, 0, 1), Buffer("b1", 36 * k, 1, 2), Buffer("b2", 36 * k, 2, 3),
            Buffer("b3", 18 * k, 3, 4), Buffer("b4", 54 * k, 4, 5), Buffer("b5", 13 * k, 5, 6)]
    plan = plan_memory(bufs, 16)
    assert plan.arena == plan.lower_bound == 72 * k
    assert plan.strategy.startswith("search")
    assert_valid(bufs, plan, 16)


def test_inplace_chain_shares_one_offset() -> None:
    # x -> relu -> requantize (smaller) -> add: every op elementwise, each input dies there
    bufs = [Buffer("x", 4096, 0, 1), Buffer("r", 4096, 1, 2, inplace_of="x"),
            Buffer("q", 1024, 2, 3, inplace_of="r"), Buffer("z", 1024, 3, 4, inplace_of="q")]
    plan = plan_memory(bufs, 16)
    assert plan.inplace == (("r", "x"), ("q", "r"), ("z", "q"))
    assert len(set(plan.offsets.values())) == 1
    assert plan.arena == plan.lower_bound == 4096
    assert plan_memory([Buffer(b.name, b.size, b.start, b.end) for b in bufs]).arena == 8192


def test_inplace_to_a_larger_output_is_not_honoured() -> None:
    # u8 -> f32 dequantize: writing 4 bytes per element would clobber unread input
    bufs = [Buffer("q", 100, 0, 1), Buffer("f", 400, 1, 2, inplace_of="q")]
    plan = plan_memory(bufs, 4)
    assert plan.inplace == ()
    assert plan.arena == plan.lower_bound == 500
    assert_valid(bufs, plan, 4)


def test_empty_and_zero_size() -> None:
    assert plan_memory([]).arena == 0
    plan = plan_memory([Buffer("a", 0, 0, 3), Buffer("b", 8, 0, 3)], 8)
    assert plan.arena == plan.lower_bound == 8


def test_describe_names_the_figures() -> None:
    bufs = [Buffer("x", 32, 0, 3), Buffer("e", 96, 0, 1), Buffer("d", 96, 1, 2)]
    text = plan_memory(bufs, 16).describe()
    assert "arena 224 B" in text and "lower bound 224 B" in text and "naive 224 B" in text
    assert text.count("\n") == 4  # summary, header, three buffers


# -- realistic chains ---------------------------------------------------------------------------
def inverted_residual_chain(blocks, hw: int, cin: int, elem: int = 1) -> list[Buffer]:
    """Liveness of a MobileNetV2-style schedule: stem, then per block expand, depthwise,
    project and (when shapes allow) the residual add, which reuses the projection in place."""
    bufs = [Buffer("in", hw * hw * 3 * elem, 0, 1)]
    hw //= 2
    step = 1
    bufs.append(Buffer("stem", hw * hw * cin * elem, step, step + 1))
    x = bufs[-1]
    for i, (cout, stride, expand) in enumerate(blocks):
        residual = stride == 1 and cin == cout
        hidden = cin * expand
        e = Buffer(f"b{i}.expand", hw * hw * hidden * elem, step + 1, step + 2)
        hw //= stride
        d = Buffer(f"b{i}.dw", hw * hw * hidden * elem, step + 2, step + 3)
        p = Buffer(f"b{i}.project", hw * hw * cout * elem, step + 3, step + 4)
        if residual:  # x is read again by the add at step + 4
            bufs[bufs.index(x)] = Buffer(x.name, x.size, x.start, step + 4, x.inplace_of)
            out = Buffer(f"b{i}.add", p.size, step + 4, step + 5, inplace_of=p.name)
            bufs += [e, d, p, out]
            step += 4
        else:
            bufs += [e, d, p]
            step += 3
        x = bufs[-1]
        cin = cout
    return bufs


MBV2_BLOCKS = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
               (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
               (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6)]
MCUNET_BLOCKS = [(8, 1, 1), (16, 2, 3), (16, 1, 3), (24, 2, 4), (24, 1, 4), (40, 2, 4),
                 (40, 1, 5), (80, 2, 5), (80, 1, 5), (80, 1, 5), (96, 1, 5), (96, 1, 5)]


@pytest.mark.parametrize(("blocks", "hw", "stem", "elem"), [
    (MBV2_BLOCKS, 224, 32, 1), (MBV2_BLOCKS, 160, 32, 4),
    (MCUNET_BLOCKS, 96, 16, 1), (MCUNET_BLOCKS, 64, 16, 1)])
def test_inverted_residual_chains_within_5_percent_of_the_bound(blocks, hw, stem, elem) -> None:
    bufs = inverted_residual_chain(blocks, hw, stem, elem)
    plan = plan_memory(bufs, 16)
    assert plan_conflicts(plan) == []
    assert plan.arena <= 1.05 * plan.lower_bound, plan.describe()
    assert plan.arena < plan.naive / 3


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("bufs", "words"), [
    ([Buffer("a", -1, 0, 1)], "size -1"),
    ([Buffer("a", 8, 3, 1)], "ends (step 1) before it starts (step 3)"),
    ([Buffer("a", 8, -1, 1)], "steps are integers >= 0"),
    ([Buffer("a", 8, 0, 1), Buffer("a", 8, 1, 2)], "used twice"),
    ([Buffer("a", 8, 0, 1, inplace_of="zz")], "'zz', which is not among the buffers"),
    ([Buffer("a", 8, 0, 2), Buffer("b", 8, 1, 2, inplace_of="a")], "must be read for the last"),
    ([Buffer("a", 8, 0, 0, inplace_of="a")], "cycle"),
    ([Buffer("a", 8, 0, 1), Buffer("b", 8, 1, 2, inplace_of="a"),
      Buffer("c", 8, 1, 2, inplace_of="a")], "both reuse 'a'"),
    (["a"], "takes Buffer objects"),
])
def test_bad_buffers_raise_a_typed_error(bufs, words) -> None:
    with pytest.raises(MemoryPlanError, match=None) as info:
        plan_memory(bufs)
    assert isinstance(info.value, SmeltError)
    assert words in str(info.value)


def test_bad_alignment_raises() -> None:
    with pytest.raises(MemoryPlanError, match="alignment must be a positive integer"):
        plan_memory([Buffer("a", 8, 0, 1)], alignment=0)
