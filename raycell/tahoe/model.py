"""Multi-task linear classifier: one linear head per task, fused into one matmul.

Training is I/O bound, so a linear model keeps the comparison about the loader;
fusing the four heads makes one (genes x sum(classes)) matmul per batch.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiTaskLinear(nn.Module):
    def __init__(self, n_genes: int, task_sizes: dict[str, int]):
        super().__init__()
        self.tasks = tuple(task_sizes)
        self.sizes = tuple(task_sizes.values())
        self.fused = nn.Linear(n_genes, sum(self.sizes))
        # The seed's initialisation: every head Xavier-uniform on its own (fan_out = its
        # classes, not the fused width), biases zero.
        with torch.no_grad():
            for head in self.fused.weight.split(self.sizes, dim=0):
                nn.init.xavier_uniform_(head)
            nn.init.zeros_(self.fused.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits per task, in ``self.tasks`` order."""
        return torch.split(self.fused(x), self.sizes, dim=1)

    def loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
        """Sum of the tasks' cross-entropies; ``labels`` is (batch, n_tasks)."""
        return sum(
            nn.functional.cross_entropy(out, labels[:, i]) for i, out in enumerate(logits)
        )
