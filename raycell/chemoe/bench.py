"""``raycell bench chemoe``: training samples/s of raycell's CheMoE against the dense reference.

Both run the same module with the same weights and batches: one training step is
forward, MSE + load-balance loss, backward and an AdamW step. The only difference is
the forward: ``CheMoE.forward`` (chosen experts only, factored first layer) against
``dense_forward`` (every expert on the (batch, genes, 512) concatenation, as
published). Implementations alternate round by round on one machine, and the best
round of each counts, so the ratio is measured side by side.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from raycell.chemoe.config import ChemoeBenchSettings
from raycell.chemoe.model import CheMoE, dense_forward
from raycell.core.config import require_device
from raycell.core.rows import write_table

IMPLEMENTATIONS = ("raycell", "dense_reference")


def _step_fn(model: CheMoE, impl: str, batch: int, genes: int, mol_dim: int,
             device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(batch, genes, generator=g).to(device)
    y = (x + 0.05 * torch.randn(batch, genes, generator=g).to(device)).clamp(0, 1)
    mol = torch.rand(batch, mol_dim, generator=g).to(device)
    cell = torch.zeros(batch, dtype=torch.long, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def step() -> None:
        with autocast:
            pred, routing = (model(x, mol, cell) if impl == "raycell"
                             else dense_forward(model, x, mol, cell))
        loss = F.mse_loss(pred.float(), y) + 0.01 * model.load_balance_loss(routing.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _timed(step, seconds: float, warmup_steps: int, device: torch.device) -> tuple[int, float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup_steps):
        step()
    sync()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
        if device.type == "cuda" and steps % 10:
            continue  # the clock is checked after a sync every 10 steps on a GPU
        sync()
    sync()
    return steps, time.perf_counter() - started


def run_chemoe_bench(genes: int, batch: int, mol_dim: int, num_experts: int, top_k: int,
                     embed_dim: int, hidden_dim: int, device: str, seconds: float,
                     rounds: int, out: Path) -> pd.DataFrame:
    dev = torch.device(device)
    rows = []
    for round_ in range(1, rounds + 1):
        for impl in IMPLEMENTATIONS:
            torch.manual_seed(0)
            model = CheMoE(genes, mol_dim, 9, num_experts, top_k, embed_dim, hidden_dim).to(dev)
            steps, elapsed = _timed(_step_fn(model, impl, batch, genes, mol_dim, dev), seconds,
                                    2, dev)
            rows.append({"implementation": impl, "round": round_, "steps": steps,
                         "seconds": elapsed, "samples_per_s": steps * batch / elapsed,
                         "ms_per_step": 1000 * elapsed / steps, "genes": genes,
                         "batch_size": batch, "num_experts": num_experts, "top_k": top_k,
                         "device": device, "threads": torch.get_num_threads()})
            print(f"  round {round_} {impl:<16} {rows[-1]['samples_per_s']:10.1f} samples/s "
                  f"({rows[-1]['ms_per_step']:.1f} ms a step)", flush=True)
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "bench_chemoe.csv", frame)  # whole or not at all, as every writer here
    return frame


def bench_chemoe(settings: ChemoeBenchSettings | None = None) -> pd.DataFrame:
    """CheMoE training samples/s, raycell's sparse dispatch against the dense reference.

    Parameters
    ----------
    settings : ChemoeBenchSettings, optional
        What ``raycell bench chemoe`` takes as flags.

    Returns
    -------
    pandas.DataFrame
        One row per (implementation, round), as written to ``<out>/bench_chemoe.csv``.
    """
    s = settings or ChemoeBenchSettings()
    require_device(s.device)
    return run_chemoe_bench(s.genes, s.batch_size, s.mol_dim, s.num_experts, s.top_k,
                            s.embed_dim, s.hidden_dim, s.device, s.seconds, s.rounds,
                            Path(s.out).expanduser().resolve())


def speedup(frame: pd.DataFrame) -> float:
    """Best round of raycell's samples/s over the best round of the dense reference."""
    best = frame.groupby("implementation")["samples_per_s"].max()
    return float(best["raycell"] / best["dense_reference"])
