import pytest
import torch
from torch import nn

from raycell.tahoe.model.multitask import MultiTaskLinear


def test_fused_heads_equal_four_separate_linear_layers():
    torch.manual_seed(0)
    sizes = {"cell_line": 5, "drug": 7, "moa_broad": 3, "moa_fine": 4}
    model = MultiTaskLinear(20, sizes)
    x = torch.randn(8, 20)
    start = 0
    for logits, n in zip(model(x), sizes.values(), strict=True):
        head = nn.Linear(20, n)
        head.weight.data = model.weight.data[:, start : start + n].T
        head.bias.data = model.bias.data[start : start + n]
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


def test_heads_are_initialised_xavier_uniform_each_with_zero_bias():
    """The seed's init: every head its own Xavier bound, sqrt(6 / (genes + classes))."""
    torch.manual_seed(2)
    genes, sizes = 2000, {"cell_line": 50, "drug": 380, "moa_broad": 4, "moa_fine": 27}
    model = MultiTaskLinear(genes, sizes)
    assert torch.count_nonzero(model.bias) == 0
    heads = model.weight.detach().split(list(sizes.values()), dim=1)
    for head, n in zip(heads, sizes.values(), strict=True):
        bound = (6 / (genes + n)) ** 0.5
        assert head.abs().max() <= bound
        # Uniform(-b, b) has standard deviation b / sqrt(3); a fused-width bound
        # (fan_out 461) would be 5-9x smaller than a 4- or 27-class head's.
        assert head.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
