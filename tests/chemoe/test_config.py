from raycell.cli import CHEMOE_FLAGS, build_parser, overrides


def test_chemoe_flags_override_the_config():
    from raycell.chemoe.config import load_chemoe_config

    args = build_parser().parse_args(
        ["chemoe", "--cell_line", "A549", "MCF7", "--fold", "0", "3", "--model", "chemoe",
         "ridge", "--top_k", "1", "--lr", "0.001", "--use_gpu", "--gpus_per_worker", "0.25"])
    cfg = load_chemoe_config(args.config, overrides(args, CHEMOE_FLAGS))
    assert cfg.grid.cell_lines == ["A549", "MCF7"] and cfg.grid.folds == [0, 3]
    assert cfg.grid.models == ["chemoe", "ridge"] and cfg.model.top_k == 1
    assert cfg.training.lr == 0.001 and cfg.training.weight_decay == 1e-3  # seed default kept
    assert cfg.ray.use_gpu and cfg.ray.gpus_per_worker == 0.25


def test_a_partial_output_section_keeps_the_workloads_other_defaults(tmp_path):
    from raycell.chemoe.config import load_chemoe_config
    from raycell.tahoe.config import load_tahoe_config

    path = tmp_path / "mine.yaml"
    path.write_text("output:\n  experiment_name: mine\n")
    chemoe = load_chemoe_config(str(path)).output
    assert (chemoe.save_dir, chemoe.experiment_name) == ("results/chemoe", "mine")
    assert load_tahoe_config(str(path)).output.save_dir == "results/tahoe"
