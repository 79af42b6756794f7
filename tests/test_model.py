import torch
from torch import nn

from raycell.models.multitask import MultiTaskLinear


def test_fused_heads_equal_four_separate_linear_layers():
    torch.manual_seed(0)
    sizes = {"cell_line": 5, "drug": 7, "moa_broad": 3, "moa_fine": 4}
    model = MultiTaskLinear(20, sizes)
    x = torch.randn(8, 20)
    start = 0
    for logits, n in zip(model(x), sizes.values(), strict=True):
        head = nn.Linear(20, n)
        head.weight.data = model.fused.weight.data[start : start + n]
        head.bias.data = model.fused.bias.data[start : start + n]
        torch.testing.assert_close(logits, head(x))
        start += n


def test_loss_is_the_sum_of_the_task_cross_entropies():
    torch.manual_seed(1)
    sizes = {"a": 3, "b": 4}
    model = MultiTaskLinear(6, sizes)
    x = torch.randn(10, 6)
    y = torch.stack([torch.randint(0, 3, (10,)), torch.randint(0, 4, (10,))], 1)
    logits = model(x)
    expected = nn.functional.cross_entropy(logits[0], y[:, 0]) + nn.functional.cross_entropy(
        logits[1], y[:, 1]
    )
    torch.testing.assert_close(model.loss(logits, y), expected)
