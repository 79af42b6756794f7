"""Where a run's ranks ran: ``runs/<key>/placement.json``, one entry per attempt and rank.

An attempt is one start of the run's worker group: the first, each restart after a lost
worker or node (``ray.max_failures``), each rerun of a killed grid. Rank 0 gathers every
rank's node and appends them, so the file tells which nodes trained the run and when
it moved.
"""

from __future__ import annotations

import json
from pathlib import Path

from raycell.core.layout import PLACEMENT_FILE
from raycell.core.rows import write_whole


def record_placement(run_dir: Path, rank: int, world: int, first_epoch: int) -> None:
    """Called by every rank at the start of an attempt; rank 0 writes. (Ray and torch are
    imported here: the grid's driver reads the file without them.)"""
    import ray
    import torch.distributed as dist

    here = {"node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address()}
    nodes = [here]
    if world > 1:
        nodes = [None] * world
        dist.all_gather_object(nodes, here)
    if rank != 0:
        return
    entries = read_placement(run_dir)
    attempt = max((e["attempt"] for e in entries), default=0) + 1
    entries += [{"attempt": attempt, "rank": r, **node, "first_epoch": first_epoch}
                for r, node in enumerate(nodes)]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_whole(run_dir / PLACEMENT_FILE, lambda tmp: tmp.write_text(json.dumps(entries, indent=1)))


def read_placement(run_dir: Path) -> list[dict]:
    path = run_dir / PLACEMENT_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def node_count(entries: list[dict]) -> int:
    """Distinct nodes the last attempt's ranks ran on (0 without a record)."""
    if not entries:
        return 0
    last = max(e["attempt"] for e in entries)
    return len({e["node_id"] for e in entries if e["attempt"] == last})
