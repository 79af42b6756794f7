"""CSR rows times a dense (genes x classes) weight, for training on Tahoe's 62,710 genes.

A Tahoe cell has ~1.4k non-zeros in 62,710 genes, so the dense matmul of a batch
does 45x the needed work. The forward here is ``embedding_bag`` (a weighted sum of
the weight rows a cell touches); the backward computes the weight's gradient,
X^T @ dY, with one in-place sparse-dense ``addmm`` (MKL on a CPU, cuSPARSE on a GPU).

Why the gradient goes into a buffer kept across steps: the weight is 29M floats,
and a fresh 115 MB tensor each step costs ~30-40 ms of page faults on a CPU, more
than the rest of the sparse step (docs/benchmarks.md). So, as Megatron's gradient
accumulation fusion does, the backward writes the weight's gradient into
``weight.grad`` itself (accumulating when one is already there, as autograd would)
and hands autograd no gradient for it. With several DDP ranks the weight is
excluded from DDP's buckets (``exclude_from_ddp``) and all-reduced here instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import nn

# torch warns once per process that sparse CSR is "beta"; the ops used here are tested.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


@dataclass(frozen=True)
class CsrRows:
    """A batch of CSR rows on a device, with the transposed CSR its backward needs."""

    indices: torch.Tensor  # int64 (nnz,): gene of each stored value
    offsets: torch.Tensor  # int64 (rows,): where each row starts in ``indices``
    values: torch.Tensor  # float32 (nnz,)
    transposed: torch.Tensor  # sparse CSR (genes x rows), the same values
    n_rows: int

    def __len__(self) -> int:
        return self.n_rows

    @classmethod
    def from_scipy(cls, x: sp.csr_array, device: torch.device) -> CsrRows:
        """Move a float32 scipy CSR batch to ``device``; the transpose is built on the host,
        so only CSR arrays cross to a GPU (all of it: ``to_device`` in docs/benchmarks.md,
        1.2 ms a 64-cell batch on a CPU)."""
        xt = x.T.tocsr()  # scipy's csr -> csc conversion, read as the transpose's CSR

        def move(a: np.ndarray, dtype=None) -> torch.Tensor:
            return torch.from_numpy(np.require(a, dtype=dtype, requirements="CW")).to(
                device, non_blocking=True)

        transposed = torch.sparse_csr_tensor(
            move(xt.indptr, np.int64), move(xt.indices, np.int64), move(xt.data, np.float32),
            size=(x.shape[1], x.shape[0]), device=device, check_invariants=False)
        return cls(move(x.indices, np.int64), move(x.indptr[:-1], np.int64),
                   move(x.data, np.float32), transposed, x.shape[0])

    def dense(self) -> torch.Tensor:
        """The rows as a dense (rows x genes) tensor: for tests and references."""
        return self.transposed.to_dense().T


class SparseLinear(torch.autograd.Function):
    """rows @ weight + bias; the weight's gradient is written into ``weight.grad``."""

    @staticmethod
    def forward(ctx, weight: nn.Parameter, bias: torch.Tensor, rows: CsrRows,
                buffers: GradBuffer) -> torch.Tensor:
        ctx.rows, ctx.weight, ctx.buffers = rows, weight, buffers
        out = nn.functional.embedding_bag(rows.indices, weight, rows.offsets, mode="sum",
                                          per_sample_weights=rows.values)
        return out + bias

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        weight, grad_out, xt = ctx.weight, grad_out.contiguous(), ctx.rows.transposed
        fresh = weight.grad is None
        # The usual case (zero_grad(set_to_none=True)): overwrite the kept buffer
        # (beta=0 never reads it). Otherwise accumulate as autograd would.
        if fresh:
            kept = ctx.buffers.get(weight)
            part = torch.addmm(kept, xt, grad_out, beta=0, out=kept)
        else:
            part = torch.addmm(torch.zeros_like(weight), xt, grad_out, beta=0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(part)  # what DDP does for the other parameters: the ranks' mean
            part /= dist.get_world_size()
        if fresh:
            weight.grad = part
        else:
            weight.grad += part
        return None, grad_out.sum(0), None, None


class GradBuffer:
    """One gradient-sized tensor per weight, allocated once and reused every step."""

    def __init__(self) -> None:
        self._tensor: torch.Tensor | None = None

    def get(self, weight: torch.Tensor) -> torch.Tensor:
        t = self._tensor
        if t is None or t.shape != weight.shape or t.device != weight.device:
            self._tensor = t = torch.empty_like(weight, memory_format=torch.contiguous_format)
        return t


def exclude_from_ddp(module: nn.Module, names: list[str]) -> None:
    """Keep DDP's hooks off parameters whose gradients are all-reduced by SparseLinear."""
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        module, names)
