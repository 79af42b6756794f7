"""CheMoE: the sparse, factored forward equals the published dense computation."""

import pytest
import torch

from raycell.chemoe.model import CheMoE, dense_forward


def batch(n=12, genes=40, mol_dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, genes, generator=g, dtype=torch.float64),
            torch.rand(n, mol_dim, generator=g, dtype=torch.float64),
            torch.randint(0, 9, (n,), generator=g))


@pytest.mark.parametrize(("experts", "k"), [(4, 2), (4, 1), (3, 3), (6, 2)])
def test_sparse_forward_and_gradients_equal_the_dense_reference(experts, k):
    torch.manual_seed(1)
    model = CheMoE(40, 24, 9, num_experts=experts, top_k=k, embed_dim=16,
                   hidden_dim=32).double().eval()
    x, mol, cell = batch()
    target = torch.rand_like(x)
    outputs = {}
    for name, forward in (("sparse", model), ("dense", lambda *a: dense_forward(model, *a))):
        model.zero_grad()
        pred, routing = forward(x, mol, cell)
        ((pred - target) ** 2).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        outputs[name] = (pred.detach(), routing.detach(), grads)
    (ps, rs, gs), (pd_, rd, gd) = outputs["sparse"], outputs["dense"]
    torch.testing.assert_close(ps, pd_, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rs, rd)
    assert gs.keys() == gd.keys()
    for name in gs:
        torch.testing.assert_close(gs[name], gd[name], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(ps, x)  # the experts change the prediction


def test_routing_picks_k_experts_whose_weights_sum_to_one():
    model = CheMoE(40, 24, 9, num_experts=5, top_k=2, embed_dim=16, hidden_dim=32).double()
    _, routing = model(*batch())
    assert ((routing > 0).sum(1) == 2).all()
    torch.testing.assert_close(routing.sum(1), torch.ones(len(routing), dtype=torch.float64))


def test_load_balance_loss_is_mse_of_mean_usage_to_uniform():
    model = CheMoE(10, 4, 9, num_experts=4, top_k=2, embed_dim=8, hidden_dim=8)
    balanced = torch.full((6, 4), 0.25)
    collapsed = torch.tensor([[0.5, 0.5, 0.0, 0.0]] * 6)
    assert model.load_balance_loss(balanced).item() == 0.0
    assert model.load_balance_loss(collapsed).item() == pytest.approx(0.0625)


def test_unchosen_experts_are_not_computed(monkeypatch):
    model = CheMoE(40, 24, 9, num_experts=4, top_k=1, embed_dim=16, hidden_dim=32).double()
    calls = []
    original = model._expert
    monkeypatch.setattr(model, "_expert", lambda e, first: calls.append((e, len(first)))
                        or original(e, first))
    x, mol, cell = batch()
    _, routing = model(x, mol, cell)
    chosen = routing.argmax(1)
    assert sorted(calls) == sorted((e, int((chosen == e).sum())) for e in chosen.unique().tolist())
    assert sum(n for _, n in calls) == len(x)  # each sample through exactly one expert


def test_top_k_larger_than_experts_is_rejected():
    with pytest.raises(ValueError, match="top_k 3"):
        CheMoE(10, 4, 9, num_experts=2, top_k=3)


def test_a_nan_validation_loss_never_leaves_the_run_without_a_best_state():
    from raycell.chemoe.worker import _improves

    nan = float("nan")
    empty = {"val_loss": float("inf"), "epoch": 0, "state": None}
    assert _improves(nan, empty)  # the first evaluation always gives a best state
    assert _improves(0.5, {"val_loss": nan, "epoch": 1, "state": {}})  # finite beats NaN
    assert not _improves(nan, {"val_loss": 0.5, "epoch": 1, "state": {}})
    assert _improves(0.4, {"val_loss": 0.5, "epoch": 1, "state": {}})
    assert not _improves(0.6, {"val_loss": 0.5, "epoch": 1, "state": {}})
