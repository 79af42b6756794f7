"""The sparse input path against the dense one: outputs, gradients and Adam updates."""

import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raycell.tahoe.data.sparse import SparseBatch
from raycell.tahoe.model.multitask import MultiTaskLinear
from raycell.tahoe.model.sparse_linear import CsrRows

SIZES = {"cell_line": 5, "drug": 9, "moa_broad": 3, "moa_fine": 4}
CPU = torch.device("cpu")


def _batch(n=12, genes=300, seed=0) -> SparseBatch:
    rng = np.random.default_rng(seed)
    x = sp.random_array((n, genes), density=0.05, format="csr", dtype=np.float32, rng=rng)
    x.data = np.ceil(x.data * 20)
    x = sp.csr_array(x.toarray() * (np.arange(n) != 3)[:, None])  # row 3 has no counts
    labels = np.stack([rng.integers(0, k, n) for k in SIZES.values()], axis=1)
    return SparseBatch(x, labels, np.arange(n))


def _grads(model, x, y):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    model.loss(logits, y).backward()
    return torch.cat(logits, 1).detach(), model.weight.grad.clone(), model.bias.grad.clone()


@pytest.mark.parametrize("log1p", [False, True])
def test_csr_rows_give_the_dense_outputs_and_gradients(log1p):
    batch = _batch()
    torch.manual_seed(0)
    model = MultiTaskLinear(300, SIZES)
    dense, y = batch.dense_on(CPU, log1p)
    rows, _ = batch.csr_on(CPU, log1p)
    torch.testing.assert_close(rows.dense(), dense)
    for expected, got in zip(_grads(model, dense, y), _grads(model, rows, y), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(model.weight.grad) > 0  # the comparison compared something


def test_adam_takes_the_same_steps_on_either_input():
    batches = [_batch(seed=s) for s in range(5)]
    weights = {}
    for sparse in (False, True):
        torch.manual_seed(1)
        model = MultiTaskLinear(300, SIZES)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
        for batch in batches:
            x, y = batch.on(CPU, True, sparse)
            loss = model.loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        weights[sparse] = model.weight.detach().clone()
    start = MultiTaskLinear(300, SIZES)  # a fresh draw: the steps moved the weights
    assert not torch.allclose(weights[True], start.weight)
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-4, atol=1e-6)


def test_a_second_backward_accumulates_as_autograd_does():
    batch = _batch()
    model = MultiTaskLinear(300, SIZES)
    rows, y = batch.csr_on(CPU, False)
    _, once, _ = _grads(model, rows, y)
    model.loss(model(rows), y).backward()  # no zero_grad: gradients add up
    torch.testing.assert_close(model.weight.grad, 2 * once)


def test_the_kept_gradient_buffer_is_reused_not_reallocated():
    batch = _batch()
    model = MultiTaskLinear(300, SIZES)
    rows, y = batch.csr_on(CPU, False)
    _grads(model, rows, y)
    first = model.weight.grad.data_ptr()
    _grads(model, _batch(seed=1).csr_on(CPU, False)[0], y)
    assert model.weight.grad.data_ptr() == first


def _ddp_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        grads = {}
        for sparse in (False, True):
            torch.manual_seed(0)
            model = MultiTaskLinear(300, SIZES)
            wrapped = torch.nn.parallel.DistributedDataParallel(
                model.for_sparse_ddp() if sparse else model)
            x, y = _batch(seed=rank).on(CPU, False, sparse)
            wrapped.zero_grad(set_to_none=True)
            model.loss(wrapped(x), y).backward()
            grads[sparse] = (model.weight.grad.clone(), model.bias.grad.clone())
        torch.save(grads, f"{out}/rank{rank}.pt")
        # Both ranks done before either tears gloo down: once, in a `make test-fast` run, a
        # rank left first and the other aborted in its teardown ("terminate called without
        # an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ddp_ranks_average_the_sparse_gradient_like_dense_ddp(tmp_path):
    from tests.service.processes import free_port

    mp.spawn(_ddp_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for got in ranks:
        for dense, sparse in zip(got[False], got[True], strict=True):
            torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ranks[0][True][0], ranks[1][True][0])  # every rank alike
    model = MultiTaskLinear(300, SIZES)  # one rank's own gradient differs from the mean
    x, y = _batch(seed=0).csr_on(CPU, False)
    model.loss(model(x), y).backward()
    assert not torch.allclose(model.weight.grad, ranks[0][True][0])


def test_csr_rows_keep_an_empty_batch_shape():
    rows = CsrRows.from_scipy(sp.csr_array((2, 7), dtype=np.float32), CPU)
    assert rows.dense().shape == (2, 7) and len(rows) == 2
