from raycell.config import SyntheticTahoe
from raycell.data.synthetic import MARKER, ensure_tahoe


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
