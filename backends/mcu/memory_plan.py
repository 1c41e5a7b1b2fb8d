"""Static memory planning: one activation arena, every tensor at a fixed offset.

A schedule runs ops one after another (steps 0, 1, ...). Each intermediate tensor is a
`Buffer` live from the step that writes it to the last step that reads it, inclusive. Two
buffers whose lifetimes overlap must not overlap in memory, with one exception: a buffer
marked `inplace_of=a` may reuse `a`'s storage, because the op writing it is elementwise and
reads `a` for the last time (an output element never lands on an input element not yet read).

Placing rectangles (time x bytes) so that the arena (the highest byte used) is smallest is
NP-hard (dynamic storage allocation). The planner is the greedy family of Pisarchyk & Lee,
"Efficient Memory Management for Deep Neural Net Inference" (2020), as TFLite uses it: take
buffers in some order and put each into the tightest gap left by the already placed buffers
it overlaps in time ("best fit"), or above them all. Several orders are tried (by size, by
breadth: the buffers of the fullest step first, by time x size, by start), each with and
without the in-place hints; the smallest arena wins, ties to the earlier order, so the result
is deterministic.

Sizes are rounded up to `alignment`, so every offset is aligned and the arena is exactly the
highest aligned end. `lower_bound` is the most bytes live at any one step (an honoured
in-place pair counted once): no plan can do better. `naive` is one buffer per tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from smelt.ir.errors import SmeltError


class MemoryPlanError(SmeltError, ValueError):
    """Buffers that no memory plan can take (bad sizes, lifetimes, names or in-place hints)."""


@dataclass(frozen=True)
class Buffer:
    """A tensor of `size` bytes, live over call steps `start..end` inclusive (`start` writes
    it, `end` reads it last). `inplace_of` names a buffer whose storage it may reuse."""

    name: str
    size: int
    start: int
    end: int
    inplace_of: str | None = None


@dataclass(frozen=True)
class MemoryPlan:
    """Byte offsets into one arena; `arena` is the exact size that the offsets need."""

    offsets: dict[str, int]
    arena: int
    lower_bound: int
    naive: int
    alignment: int = 16
    strategy: str = ""
    inplace: tuple[tuple[str, str], ...] = ()  # honoured (buffer, reused) pairs
    buffers: tuple[Buffer, ...] = field(default=(), repr=False)

    def describe(self, limit: int = 12) -> str:
        """Arena, bound and naive size on one line, then the largest buffers' places."""
        ratio = self.arena / self.lower_bound if self.lower_bound else 1.0
        saved = 1 - self.arena / self.naive if self.naive else 0.0
        lines = [f"arena {self.arena:,} B = {ratio:.3f}x lower bound {self.lower_bound:,} B; "
                 f"naive {self.naive:,} B ({saved:.0%} saved); {len(self.offsets)} buffers, "
                 f"{len(self.inplace)} in place, alignment {self.alignment}, "
                 f"strategy {self.strategy or 'n/a'}"]
        if self.buffers and limit > 0:
            lines.append(f"  {'buffer':<24} {'offset':>9} {'bytes':>9}  steps")
            biggest = sorted(self.buffers, key=lambda b: (-b.size, b.name))[:limit]
            for b in sorted(biggest, key=lambda b: (self.offsets[b.name], b.start)):
                lines.append(f"  {b.name[:24]:<24} {self.offsets[b.name]:>9,} {b.size:>9,}  "
                             f"{b.start}..{b.end}")
            if len(self.buffers) > limit:
                lines.append(f"  ... {len(self.buffers) - limit} smaller buffers")
        return "\n".join(lines)


# -- input checks -------------------------------------------------------------------------------
def _check(buffers: Sequence[Buffer], alignment: int) -> dict[str, Buffer]:
    if not isinstance(alignment, int) or alignment < 1:
        raise MemoryPlanError(f"alignment must be a positive integer, got {alignment!r}; "
                              "pass the byte alignment the target needs (e.g. 16)")
    by_name: dict[str, Buffer] = {}
    for b in buffers:
        if not isinstance(b, Buffer):
            raise MemoryPlanError(f"plan_memory takes Buffer objects, got {type(b).__name__}")
        if b.name in by_name:
            raise MemoryPlanError(f"buffer name {b.name!r} is used twice; give every tensor "
                                  "its own name")
        if not isinstance(b.size, int) or b.size < 0:
            raise MemoryPlanError(f"buffer {b.name!r} has size {b.size!r}; sizes are byte "
                                  "counts >= 0")
        if not (isinstance(b.start, int) and isinstance(b.end, int)) or b.start < 0:
            raise MemoryPlanError(f"buffer {b.name!r} has lifetime {b.start!r}..{b.end!r}; "
                                  "steps are integers >= 0")
        if b.start > b.end:
            raise MemoryPlanError(f"buffer {b.name!r} ends (step {b.end}) before it starts "
                                  f"(step {b.start}); end is the last step that reads it")
        by_name[b.name] = b
    for b in buffers:
        if b.inplace_of is None:
            continue
        src = by_name.get(b.inplace_of)
        if src is None:
            raise MemoryPlanError(f"buffer {b.name!r} is in place of {b.inplace_of!r}, which "
                                  "is not among the buffers; name a buffer of this plan")
        if src.end != b.start:
            raise MemoryPlanError(
                f"buffer {b.name!r} (steps {b.start}..{b.end}) cannot reuse {src.name!r} "
                f"(steps {src.start}..{src.end}) in place: {src.name!r} must be read for the "
                f"last time at step {b.start}, the step that writes {b.name!r}; drop the hint")
    reused: dict[str, str] = {}
    for b in buffers:
        if b.inplace_of is not None and reused.setdefault(b.inplace_of, b.name) != b.name:
            raise MemoryPlanError(f"buffers {reused[b.inplace_of]!r} and {b.name!r} both reuse "
                                  f"{b.inplace_of!r} in place; keep one hint per reused buffer")
    for b in buffers:
        seen, cur = {b.name}, b
        while cur.inplace_of is not None:
            if cur.inplace_of in seen:
                raise MemoryPlanError(f"in-place hints form a cycle through {b.name!r}; an "
                                      "in-place chain must start at a buffer with no hint")
            seen.add(cur.inplace_of)
            cur = by_name[cur.inplace_of]
    return by_name


# -- in-place groups ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    """What one placement decides: buffers at one offset (an in-place chain, or one buffer)."""

    members: tuple[Buffer, ...]
    sizes: tuple[int, ...]  # aligned

    @property
    def size(self) -> int:
        return max(self.sizes)

    @property
    def start(self) -> int:
        return self.members[0].start

    @property
    def end(self) -> int:
        return max(m.end for m in self.members)


def _honourable(b: Buffer, by_name: dict[str, Buffer]) -> bool:
    """An output no larger than its input: a forward elementwise loop never overwrites an
    input byte before reading it."""
    return b.inplace_of is not None and b.size <= by_name[b.inplace_of].size


def _items(buffers: Sequence[Buffer], by_name: dict[str, Buffer], align: Callable[[int], int],
           use_inplace: bool) -> list[_Item]:
    next_of = {b.inplace_of: b for b in buffers if use_inplace and _honourable(b, by_name)}
    heads = [b for b in buffers
             if not (use_inplace and _honourable(b, by_name))]
    items = []
    for head in heads:
        chain = [head]
        while chain[-1].name in next_of:
            chain.append(next_of[chain[-1].name])
        items.append(_Item(tuple(chain), tuple(align(m.size) for m in chain)))
    return items


def _lower_bound(items: Sequence[_Item]) -> int:
    """Most bytes live at one step. A chain member takes over its predecessor's bytes at the
    step that writes it (it is no larger, see `_honourable`), so that step counts it once."""
    delta: dict[int, int] = {}
    for it in items:
        for i, (m, size) in enumerate(zip(it.members, it.sizes, strict=True)):
            first = m.start if i == 0 else m.start + 1
            delta[first] = delta.get(first, 0) + size
            delta[m.end + 1] = delta.get(m.end + 1, 0) - size
    live, best = 0, 0
    for step in sorted(delta):
        live += delta[step]
        best = max(best, live)
    return best


# -- placement ----------------------------------------------------------------------------------
def _live_bytes(item: _Item, step: int) -> int:
    """Bytes `item` holds at `step` (0 when it is not live)."""
    return max((s for m, s in zip(item.members, item.sizes, strict=True)
                if m.start <= step <= m.end), default=0)


def _free(item: _Item, placed: Sequence[tuple[int, _Item]]) -> list[tuple[int, int | None]]:
    """Offset ranges [lo, hi] where `item` overlaps no placed item live at the same time; the
    last range is open (hi None)."""
    blocked = []  # offsets o with lo < o < hi would overlap a placed item
    for off, other in placed:
        if other.start > item.end or item.start > other.end:
            continue
        for m, s in zip(item.members, item.sizes, strict=True):
            for n, t in zip(other.members, other.sizes, strict=True):
                if s and t and m.start <= n.end and n.start <= m.end:
                    blocked.append((off - s, off + t))
    blocked.sort()
    free: list[tuple[int, int | None]] = []
    cursor = 0
    for lo, hi in blocked:
        if lo >= cursor:
            free.append((cursor, lo))
        cursor = max(cursor, hi)
    return [*free, (cursor, None)]


def _best_fit(item: _Item, placed: Sequence[tuple[int, _Item]]) -> int:
    """Lowest offset of the tightest gap among placed items live at the same time."""
    free = _free(item, placed)
    gaps = [(hi - lo, lo) for lo, hi in free if hi is not None]
    return min(gaps)[1] if gaps else free[-1][0]


def _place(order: Sequence[_Item]) -> tuple[dict[int, int], int]:
    placed: list[tuple[int, _Item]] = []
    offsets: dict[int, int] = {}
    arena = 0
    for item in order:
        off = _best_fit(item, placed)
        placed.append((off, item))
        offsets[id(item)] = off
        arena = max(arena, off + item.size)
    return offsets, arena


def _by_breadth(items: Sequence[_Item]) -> list[_Item]:
    """Pisarchyk & Lee's greedy by breadth: steps by live bytes, fullest first; each step's
    unplaced items by size."""
    steps = sorted({m.start for it in items for m in it.members}
                   | {m.end for it in items for m in it.members})
    live = {t: [it for it in items if _live_bytes(it, t)] for t in steps}
    total = {t: sum(_live_bytes(it, t) for it in live[t]) for t in steps}
    order, seen = [], set()
    for t in sorted(steps, key=lambda t: (-total[t], t)):
        for it in sorted(live[t], key=lambda it: (-_live_bytes(it, t), it.start)):
            if id(it) not in seen:
                seen.add(id(it))
                order.append(it)
    return order


ORDERS: dict[str, Callable[[Sequence[_Item]], list[_Item]]] = {
    "size": lambda items: sorted(items, key=lambda it: (-it.size, it.start, -it.end)),
    "breadth": _by_breadth,
    "area": lambda items: sorted(items, key=lambda it: (-it.size * (it.end - it.start + 1),
                                                        it.start)),
    "lifetime": lambda items: sorted(items, key=lambda it: (-(it.end - it.start), -it.size,
                                                            it.start)),
    "start": lambda items: sorted(items, key=lambda it: (it.start, -it.size)),
}


def _candidates(item: _Item, placed: Sequence[tuple[int, _Item]], limit: int) -> list[int]:
    """Offsets where `item` fits below `limit` touching a neighbour or an arena end: lowest
    first, then highest, then inwards."""
    top = limit - item.size
    ends = []
    for lo, hi in _free(item, placed):
        hi = top if hi is None else min(hi, top)
        if lo <= hi:
            ends += [lo, hi]
    lows, highs = sorted(set(ends[::2])), sorted(set(ends[1::2]) - set(ends[::2]), reverse=True)
    out = []
    for i in range(max(len(lows), len(highs))):
        out += lows[i:i + 1] + highs[i:i + 1]
    return out


def _search(items: Sequence[_Item], limit: int, budget: int) -> dict[int, int] | None:
    """Offsets for `items` within `limit` bytes, found by depth-first search in start order
    (each item at the bottom or top of a free range), or None when `budget` placements
    find none. In start order an item conflicts only with items live at its start, so a
    chain of layers alternates ends of the arena, which greedy orders miss."""
    order = sorted(items, key=lambda it: (it.start, -it.size, it.end))
    if not order:
        return {}
    # the earlier items still live when item k starts: all an item can conflict with
    overlapping = [[j for j in range(k) if order[j].end >= order[k].start]
                   for k in range(len(order))]
    placed: list[tuple[int, _Item]] = []
    stack = [_candidates(order[0], placed, limit)]
    while stack:  # invariant: len(placed) == len(stack) - 1
        if not stack[-1]:
            stack.pop()
            if placed:
                placed.pop()
            continue
        budget -= 1
        if budget < 0:
            return None
        placed.append((stack[-1].pop(0), order[len(placed)]))
        k = len(placed)
        if k == len(order):
            return {id(it): off for off, it in placed}
        stack.append(_candidates(order[k], [placed[j] for j in overlapping[k]], limit))
    return None


def _improve(best: tuple[int, str, list[_Item], dict[int, int]], items: list[_Item], bound: int,
             align: Callable[[int], int]) -> tuple[int, str, list[_Item], dict[int, int]]:
    """The greedy result, or a search's below it: the lower bound first, then a few limits
    between it and the greedy arena."""
    budget = max(SEARCH_BUDGET, 10 * len(items))
    for k in range(SEARCH_LIMITS):
        limit = align(bound + (best[0] - bound) * k // SEARCH_LIMITS)
        if limit >= best[0]:
            break
        offsets = _search(items, limit, budget)
        if offsets is not None:
            arena = max(offsets[id(it)] + it.size for it in items)
            return arena, f"search within {limit:,} B", items, offsets
    return best


SEARCH_LIMITS = 4  # tried: bound, then 1/4, 2/4, 3/4 of the way to the greedy arena
SEARCH_BUDGET = 2000  # placements (or 10 per item) before a limit is given up


def align_up(n: int, alignment: int) -> int:
    """n rounded up to a multiple of `alignment`."""
    return -(-n // alignment) * alignment


def plan_memory(buffers: list[Buffer], alignment: int = 16) -> MemoryPlan:
    """Offsets for `buffers` in one arena: the smallest of several greedy best-fit orders,
    with in-place hints honoured where they do not make the arena bigger."""
    by_name = _check(buffers, alignment)

    def align(n: int) -> int:
        return align_up(n, alignment)

    naive = sum(align(b.size) for b in buffers)
    best: tuple[int, str, list[_Item], dict[int, int]] | None = None
    bound = 0
    for use_inplace in (True, False):
        items = _items(buffers, by_name, align, use_inplace)
        if use_inplace:
            bound, inplace_items = _lower_bound(items), items
        for name, order in ORDERS.items():
            offsets, arena = _place(order(items))
            if best is None or arena < best[0]:
                best = (arena, name + ("" if use_inplace else ", no in-place"), items, offsets)
            if best[0] == bound:
                break
        if best is not None and best[0] == bound:
            break
    if best is not None and best[0] > bound:
        best = _improve(best, inplace_items, bound, align)
    arena, strategy, items, item_offsets = best if best else (0, "empty", [], {})
    offsets = {m.name: item_offsets[id(it)] for it in items for m in it.members}
    inplace = tuple((m.name, m.inplace_of) for it in items for m in it.members[1:])
    return MemoryPlan(offsets={b.name: offsets[b.name] for b in buffers}, arena=arena,
                      lower_bound=bound, naive=naive, alignment=alignment, strategy=strategy,
                      inplace=inplace, buffers=tuple(buffers))


def plan_conflicts(plan: MemoryPlan) -> list[tuple[str, str]]:
    """Pairs of buffers live at once whose bytes overlap, except buffers of one honoured
    in-place chain: empty for a valid plan."""
    chain = {b.name: b.name for b in plan.buffers}
    for b, a in plan.inplace:  # chains are listed head first
        chain[b] = chain[a]
    spans = sorted(plan.buffers, key=lambda b: b.start)
    bad = []
    for i, a in enumerate(spans):
        a_lo = plan.offsets[a.name]
        a_hi = a_lo + align_up(a.size, plan.alignment)
        for b in spans[i + 1:]:
            if b.start > a.end:
                break
            b_lo = plan.offsets[b.name]
            b_hi = b_lo + align_up(b.size, plan.alignment)
            if (a.size and b.size and a_lo < b_hi and b_lo < a_hi
                    and chain[a.name] != chain[b.name]):
                bad.append((a.name, b.name))
    return bad
