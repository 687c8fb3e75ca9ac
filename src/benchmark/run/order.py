"""The order a run asks its arms in (``run.order``), as a list of segments: (block, arm, slot), each a
run of one arm's calls of one iteration block.

- ``counterbalanced`` (the default): an iteration block is one iteration of every arm; within a
  block the arms take turns, one arm's calls of that iteration in a row (its items in the
  iteration's shuffled order). The arms' order changes block by block: a seeded permutation of the
  arms, rotated by one place every second block, and every odd block the reverse of the block
  before it (AB BA BA AB for two arms; ABC CBA BCA ACB ... for three). A pair of blocks puts every
  arm at the same mean place in time, so a drift that grows steadily through the run (a machine
  warming up, another process starting) falls on every arm alike; the rotation spreads the first
  and last places over the arms. An odd number of blocks leaves the last block unpaired.
- ``grouped``: every call of one arm in a row, arm after arm in the config's order (one load per
  model); a drift lands on whichever arm runs then, and no statistic can tell it from the arms'
  own speeds.

The design (its name, seed and each block's order) is stored with the run (``Store.set_order``), so
a resumed run keeps it; each call stores its block and slot (its arm's place in the block).
"""

from __future__ import annotations

import random
from typing import NamedTuple

ORDERS = ("counterbalanced", "grouped")


class Segment(NamedTuple):
    block: int    # the iteration block (= the iteration)
    arm: str      # the arm's name
    slot: int     # the arm's place in the block's order (0 = first)


def design(arms: list[str], iterations: int, seed: int, order: str = "counterbalanced") -> dict:
    """The run's order as stored: ``{"order", "seed", "blocks": [[arm, ...] per block]}``."""
    if order not in ORDERS:
        raise ValueError(f"run.order must be one of {', '.join(ORDERS)}, not {order!r}")
    if order == "grouped" or len(arms) < 2:
        return {"order": order, "seed": seed, "blocks": [list(arms) for _ in range(iterations)]}
    base = list(arms)
    random.Random(f"{seed}:arm-order").shuffle(base)
    blocks = []
    for b in range(iterations):
        shift = (b // 2) % len(base)
        row = base[shift:] + base[:shift]
        blocks.append(row[::-1] if b % 2 else row)
    return {"order": order, "seed": seed, "blocks": blocks}


def segments(stored: dict, arms: list[str]) -> list[Segment]:
    """The segments of ``arms`` (the arms this process runs, in the config's order) in the order they run,
    from a stored design; an arm the design does not name (added to the config on resume) runs after
    the others, in each of its blocks."""
    blocks = stored["blocks"]
    if stored["order"] == "grouped":
        return [Segment(b, a, k) for k, a in enumerate(arms) for b in range(len(blocks))]
    out = []
    for b, row in enumerate(blocks):
        out += [Segment(b, a, k) for k, a in enumerate(row) if a in arms]
        out += [Segment(b, a, len(row) + k) for k, a in enumerate(a for a in arms if a not in row)]
    return out
