import anndata
import numpy as np
import pytest

from raycell.core.generated import MARKER
from raycell.tahoe.config import SyntheticTahoe
from raycell.tahoe.data.synthetic import ensure_tahoe


def test_demo_data_is_generated_once_and_reused(tmp_path):
    spec = SyntheticTahoe(plates=2, cells_per_plate=200, genes=50, drugs=4, cell_lines=2,
                          out_dir=str(tmp_path / "demo"))
    out = ensure_tahoe(spec.out_dir, spec)
    plate = next(out.glob("plate1_*.h5ad"))
    stamp = plate.stat().st_mtime_ns
    assert ensure_tahoe(spec.out_dir, spec) == out
    assert plate.stat().st_mtime_ns == stamp  # reused, not rewritten
    other = spec.model_copy(update={"seed": 5})
    ensure_tahoe(other.out_dir, other)
    assert plate.stat().st_mtime_ns != stamp  # another spec regenerates
    assert '"seed": 5' in (out / MARKER).read_text()


def test_sparse_profile_draws_counts_with_the_asked_non_zeros(tmp_path):
    from raycell.tahoe.config import TahoeSpec
    from raycell.tahoe.data.synthetic import write_tahoe

    spec = TahoeSpec(plates=2, cells_per_plate=600, genes=8000, nnz_per_cell=300, drugs=5,
                     cell_lines=3)
    out = write_tahoe(tmp_path, spec)
    adata = anndata.read_h5ad(next(out.glob("plate1_*.h5ad")))
    x = adata.X
    assert x.shape == (600, 8000) and x.has_sorted_indices
    nnz = np.diff(x.indptr)
    assert 0.8 * 300 < nnz.mean() < 1.3 * 300
    assert (x.data >= 1).all() and np.array_equal(x.data, np.round(x.data))
    np.testing.assert_array_equal(adata.obs["gene_count"], nnz)


def test_sparse_profile_rejects_more_non_zeros_than_half_the_genes():
    from pydantic import ValidationError

    from raycell.tahoe.config import TahoeSpec

    with pytest.raises(ValidationError, match="nnz_per_cell"):
        TahoeSpec(genes=100, nnz_per_cell=80)
