"""Config loading: typed fields, overrides, and errors that name the key."""

import dataclasses
from pathlib import Path

import pytest

from auxnas.config import ConfigError, ExperimentConfig, load_config, parse_override, replace
from auxnas.config.validate import validate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_packaged_quickstart_loads_by_name():
    cfg = load_config("quickstart")
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.tasks.primary == "normal"
    assert cfg.model.backbone == "tiny_resnet"


def test_overrides_are_typed(tmp_path):
    overrides = ["train.lr=1e-4", "tasks.aux=[seg]", "method.name=aux_head", "data.augment=false"]
    cfg = load_config(write(tmp_path, "train:\n  epochs: 3\n"), overrides)
    assert cfg.train.epochs == 3
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.tasks.aux == ["seg"]
    assert cfg.data.augment is False


def test_int_accepted_for_float(tmp_path):
    assert load_config(write(tmp_path, "train:\n  lr: 1\n")).train.lr == 1.0


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train:\n  epochz: 3\n", [], "unknown key train.epochz"),
        ("bogus: 1\n", [], "unknown key bogus"),
        ("train:\n  epochs: three\n", [], "train.epochs: expected an integer"),
        ("train:\n  optimizer: rmsprop\n", [], "train.optimizer: expected one of 'adam', 'sgd'"),
        ("tasks:\n  primary: colour\n", [], "tasks.primary: unknown task 'colour'"),
        ("tasks:\n  primary: seg\n  aux: [seg]\n", [], "cannot also be auxiliary"),
        ("model:\n  backbone: resnet9000\n", [], "model.backbone: unknown backbone"),
        ("data:\n  val_fraction: 1.5\n", [], "data.val_fraction"),
        ("tasks:\n  loss_weights: {sge: 2.0}\n", [], "tasks.loss_weights.sge: unknown task"),
        ("train:\n  lr: -1\n", [], "train.lr: must be positive"),
        ("name: t\n", ["train.epochs"], "expected key=value"),
        ("name: t\n", ["data.image_size=big"], "data.image_size: expected an integer"),
        ("- a\n- b\n", [], "expected a mapping at the top level"),
        ("train: [\n", [], "not valid YAML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:  # the schema's errors, then the components' (as `auxnas train` checks)
        validate(load_config(path, overrides), source=str(path))
    assert message in str(err.value)
    if "key=value" not in message:
        assert str(path) in str(err.value)


def test_missing_config_file_lists_packaged_configs(tmp_path):
    with pytest.raises(ConfigError, match="quickstart"):
        load_config(tmp_path / "nope.yaml")


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=1e-3") == (["a", "b"], 0.001)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=text") == (["a"], "text")


def test_configs_are_frozen_and_a_replaced_one_is_checked_again():
    cfg = load_config("quickstart")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 1  # type: ignore[misc]
    changed = replace(cfg, out_dir="elsewhere", train={"epochs": 1}, tasks=cfg.tasks)
    assert changed.train.epochs == 1 and changed.out_dir == "elsewhere" and changed.train.lr == cfg.train.lr
    assert cfg.train.epochs != 1  # the original is untouched
    with pytest.raises(ConfigError, match="train.lr: must be positive"):
        replace(cfg, train={"lr": -1.0})
    with pytest.raises(TypeError):
        replace(cfg, train={"no_such_key": 1})
