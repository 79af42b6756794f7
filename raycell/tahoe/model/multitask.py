"""Multi-task linear classifier: one linear head per task, fused into one matmul.

Training is I/O bound, so a linear model keeps the comparison about the loader;
fusing the four heads makes one (genes x sum(classes)) matmul per batch. The weight
is stored genes x classes so that a sparse batch reads whole weight rows: the
model takes dense rows or ``CsrRows`` (``raycell.tahoe.model.sparse_linear``), with the
same outputs and gradients to float tolerance.
"""

from __future__ import annotations

import torch
from torch import nn

from raycell.tahoe.model.sparse_linear import CsrRows, GradBuffer, SparseLinear, exclude_from_ddp


class MultiTaskLinear(nn.Module):
    def __init__(self, n_genes: int, task_sizes: dict[str, int]):
        super().__init__()
        self.tasks = tuple(task_sizes)
        self.sizes = tuple(task_sizes.values())
        # The seed's initialisation: every head Xavier-uniform on its own (fan_out = its
        # classes, not the fused width), biases zero. Drawn in nn.Linear's (classes x
        # genes) layout, so a seed gives the values it gave before the transpose.
        heads = [nn.init.xavier_uniform_(torch.empty(n, n_genes)) for n in self.sizes]
        self.weight = nn.Parameter(torch.cat(heads).T.contiguous())
        self.bias = nn.Parameter(torch.zeros(sum(self.sizes)))
        self._grad_buffer = GradBuffer()

    def forward(self, x: torch.Tensor | CsrRows) -> tuple[torch.Tensor, ...]:
        """Logits per task, in ``self.tasks`` order."""
        if isinstance(x, CsrRows):
            fused = SparseLinear.apply(self.weight, self.bias, x, self._grad_buffer)
        else:
            fused = torch.addmm(self.bias, x, self.weight)
        return torch.split(fused, self.sizes, dim=1)

    def loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
        """Sum of the tasks' cross-entropies; ``labels`` is (batch, n_tasks)."""
        return sum(
            nn.functional.cross_entropy(out, labels[:, i]) for i, out in enumerate(logits)
        )

    def for_sparse_ddp(self) -> MultiTaskLinear:
        """Before DDP wraps a model fed CsrRows: SparseLinear all-reduces the weight itself."""
        exclude_from_ddp(self, ["weight"])
        return self
