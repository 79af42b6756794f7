"""CheMoE: a chemistry-aware mixture of per-gene experts (seed 003, docs/facts.md).

A sample's global context g = [drug 128 ; cell line 128 ; basal expression 128]
routes it to its top-k experts. Expert e predicts each gene j's change from
[g ; gene embedding e_j] through 512 -> 256 -> 128 -> 1; the prediction is
diseased + the routing-weighted sum of the chosen experts.

Two things make it cheaper than the published version, with the same function:
- only the k chosen experts run for a sample (the published one runs all of them);
- the first expert layer factors: W [g ; e_j] = W_g g + W_e e_j, so W_e e_j is
  computed once per batch for all genes and W_g g once per sample, instead of a
  (batch x genes x 512) concatenation going through a 512-wide layer.
``dense_forward`` is the straightforward version, kept as the test and bench reference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _encoder(n_in: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out), nn.LayerNorm(out))


class CheMoE(nn.Module):
    def __init__(self, n_genes: int, mol_dim: int, n_cell_lines: int, num_experts: int = 4,
                 top_k: int = 2, embed_dim: int = 128, hidden_dim: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k {top_k} must be in 1..num_experts {num_experts}")
        self.num_experts, self.top_k = num_experts, top_k
        context = 3 * embed_dim
        self.drug = _encoder(mol_dim, hidden_dim, embed_dim, dropout)
        self.cell = nn.Embedding(n_cell_lines, embed_dim)
        self.basal = _encoder(n_genes, hidden_dim, embed_dim, 0.0)
        self.gate = nn.Sequential(nn.Linear(context, embed_dim), nn.ReLU(),
                                  nn.Linear(embed_dim, num_experts))
        self.gene_embedding = nn.Parameter(torch.randn(n_genes, embed_dim))  # as nn.Embedding
        # Experts, stacked on a leading expert axis; the first layer split into its
        # context part (w1_context) and its gene-embedding part (w1_gene).
        e, h1, h2 = num_experts, hidden_dim, hidden_dim // 2

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape) / shape[-2] ** 0.5)

        self.w1_context, self.w1_gene = weight(e, context, h1), weight(e, embed_dim, h1)
        self.b1 = nn.Parameter(torch.zeros(e, h1))
        self.w2, self.b2 = weight(e, h1, h2), nn.Parameter(torch.zeros(e, h2))
        # Small last layer: the model starts close to "no change", a sane first guess.
        self.w3, self.b3 = nn.Parameter(weight(e, h2, 1) * 0.1), nn.Parameter(torch.zeros(e, 1))

    def context(self, diseased, mol, cell) -> torch.Tensor:
        return torch.cat([self.drug(mol), self.cell(cell), self.basal(diseased)], dim=1)

    def route(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-k on the gate's logits, softmax over the k chosen.

        Returns (chosen expert ids (B, k), their weights (B, k), routing (B, E) with
        zeros for experts not chosen)."""
        top_logits, chosen = self.gate(context).topk(self.top_k, dim=1)
        weights = top_logits.softmax(dim=1)
        routing = torch.zeros(len(context), self.num_experts, dtype=weights.dtype,
                              device=weights.device).scatter(1, chosen, weights)
        return chosen, weights, routing

    def load_balance_loss(self, routing: torch.Tensor) -> torch.Tensor:
        """MSE between the batch's mean routing weight per expert and 1 / num_experts."""
        usage = routing.mean(0)
        return F.mse_loss(usage, torch.full_like(usage, 1.0 / self.num_experts))

    def _expert(self, e: int, first: torch.Tensor) -> torch.Tensor:
        """Expert e from its first layer's pre-activation (n, genes, h1) to (n, genes)."""
        hidden = F.relu(F.relu(first) @ self.w2[e] + self.b2[e])
        return (hidden @ self.w3[e]).squeeze(-1) + self.b3[e]

    def forward(self, diseased, mol, cell) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted treated expression (B, genes) and routing weights (B, E)."""
        ctx = self.context(diseased, mol, cell)
        chosen, weights, routing = self.route(ctx)
        change = torch.zeros_like(diseased)
        for e in range(self.num_experts):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            # (genes, h1) once per batch + (n, 1, h1) once per sample, broadcast.
            gene_part = self.gene_embedding @ self.w1_gene[e] + self.b1[e]
            first = (ctx[rows] @ self.w1_context[e]).unsqueeze(1) + gene_part
            out = self._expert(e, first) * weights[rows, slot].unsqueeze(1)
            change = change.index_add(0, rows, out.to(change.dtype))
        return diseased + change, routing


def dense_forward(model: CheMoE, diseased, mol, cell) -> tuple[torch.Tensor, torch.Tensor]:
    """The published computation: every expert on the full (B, genes, 512) concatenation.

    Same parameters and the same function as ``CheMoE.forward``; the reference for
    its tests and for ``raycell bench chemoe``.
    """
    ctx = model.context(diseased, mol, cell)
    _, _, routing = model.route(ctx)
    batch, genes = diseased.shape
    joint = torch.cat([ctx.unsqueeze(1).expand(batch, genes, -1),
                       model.gene_embedding.unsqueeze(0).expand(batch, -1, -1)], dim=2)
    outputs = []
    for e in range(model.num_experts):
        w1 = torch.cat([model.w1_context[e], model.w1_gene[e]], dim=0)  # (512, h1)
        outputs.append(model._expert(e, joint @ w1 + model.b1[e]))
    change = (torch.stack(outputs, dim=1) * routing.unsqueeze(2)).sum(1)
    return diseased + change, routing
