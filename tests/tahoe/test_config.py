import pytest

from raycell.cli import TAHOE_FLAGS, build_parser, overrides
from raycell.core.errors import RaycellError
from raycell.tahoe.config import load_tahoe_config
from raycell.tahoe.loaders.strategies import STRATEGY_NAMES


@pytest.mark.parametrize("name", ["default", "pilot", "demo"])
def test_packaged_configs_load(name):
    cfg = load_tahoe_config(name)
    assert cfg.enabled_strategies() == list(STRATEGY_NAMES)
    assert cfg.scdataset.fetch_factor == 256 and cfg.training.batch_size == 64
    assert cfg.training.log1p is False  # raw counts into the model, as the seed


def test_pilot_is_the_seed_pilot():
    cfg = load_tahoe_config("pilot")
    assert cfg.data.train_plates == [1] and cfg.data.test_plates == [14]
    assert (cfg.data.max_train_cells, cfg.data.max_test_cells) == (100_000, 50_000)
    assert cfg.training.num_epochs == 1


def test_cli_values_override_the_config():
    args = build_parser().parse_args(
        ["tahoe", "--config", "pilot", "--all", "--batch_size", "128", "--epochs", "2",
         "--block_size", "32", "--num_workers", "3", "--h5ad_dir", "/data/tahoe",
         "--seed", "1", "2"]
    )
    cfg = load_tahoe_config(args.config, overrides(args, TAHOE_FLAGS))
    assert cfg.training.batch_size == 128 and cfg.training.num_epochs == 2
    assert cfg.training.seeds == [1, 2]
    assert cfg.strategies["block_shuffling"].block_size == 32
    assert cfg.strategies["weighted_block"].block_size == 32
    assert cfg.strategies["ray_block_shuffle"].block_size == 32
    assert cfg.strategies["random"].block_size == 1  # block size 1 by definition
    assert cfg.scdataset.num_workers == 3
    assert cfg.data.h5ad_dir == "/data/tahoe"
    assert cfg.data.max_train_cells == 100_000  # untouched values keep the config's
    assert cfg.training.log1p is False


def test_log1p_is_an_option_from_the_command_line():
    for flag, want in (("--log1p", True), ("--no-log1p", False)):
        args = build_parser().parse_args(["tahoe", "--config", "demo", "--all", flag])
        assert load_tahoe_config(args.config, overrides(args, TAHOE_FLAGS)).training.log1p \
            is want


def test_several_strategies_by_name():
    args = build_parser().parse_args(["tahoe", "--strategy", "streaming", "random"])
    assert args.strategy == ["streaming", "random"]


def test_a_config_file_may_list_only_some_strategies(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("strategies:\n  random: {enabled: false}\n")
    cfg = load_tahoe_config(str(path))
    assert "random" not in cfg.enabled_strategies()
    assert cfg.strategies["block_shuffling"].block_size == 16


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("training:\n  batchsize: 3\n", "unknown config key 'training.batchsize'"),
        ("training:\n  batch_size: 0\n", "training.batch_size"),
        ("strategies:\n  shuffled: {}\n", "unknown strategy 'shuffled'"),
        ("data:\n  train_plates: [1]\n  test_plates: [1]\n", "in both train_plates and"),
        ("training: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_culprit(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(RaycellError, match=message.replace("[", r"\[")):
        load_tahoe_config(str(path))


def test_unknown_packaged_config():
    with pytest.raises(RaycellError, match="neither a file nor a packaged config"):
        load_tahoe_config("nightly")


@pytest.mark.parametrize("name", ["random", "weighted_true", "streaming", "ray_buffer"])
def test_a_single_row_strategy_with_a_block_size_is_refused(name):
    with pytest.raises(RaycellError) as err:
        load_tahoe_config("default", {f"strategies.{name}.block_size": 16})
    message = str(err.value)
    assert f"strategies.{name}.block_size is 16" in message and "block size 1" in message
    assert "\n" not in message


def test_block_strategies_take_any_block_size():
    cfg = load_tahoe_config("default", {"strategies.weighted_block.block_size": 4})
    assert cfg.strategies["weighted_block"].block_size == 4


def test_a_strategy_listed_with_some_keys_keeps_its_own_block_size(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("strategies:\n  block_shuffling: {enabled: true}\n  random: {enabled: true}\n")
    cfg = load_tahoe_config(str(path))
    assert cfg.strategies["block_shuffling"].block_size == 16  # not StrategySettings' 1
    assert cfg.strategies["random"].block_size == 1
