"""Hostile configuration inputs: a bad value, an empty or a binary config file is refused before any work in one line
naming the key or path and what it expects (exit status 2 at the CLI), never a traceback."""


import pytest
from bad_inputs import SMALL, one_line_error

from auxnas.config import ConfigError, load_config
from auxnas.config.validate import validate


@pytest.mark.parametrize(("overrides", "key", "expected"), [
    (["model.backbone=tiny_vit", "data.image_size=36"], "data.image_size", "multiple of its patch size 8"),
    (["model.backbone=vit_tiny", "data.image_size=40"], "data.image_size", "multiple of its patch size 16"),
    (["model.backbone=tiny_vgg", "data.image_size=12"], "data.image_size", "at least 16"),
    (["data.image_size=8"], "data.image_size", "at least 16"),
    (["train.poly_power=0"], "train.poly_power", "must be positive"),
    (["train.poly_power=-0.5"], "train.poly_power", "must be positive"),
    (["train.lr=nan"], "train.lr", "finite"),
    (["train.lr=inf"], "train.lr", "finite"),
    (["train.weight_decay=-0.1"], "train.weight_decay", "non-negative"),
    (["train.weight_decay=.nan"], "train.weight_decay", "finite"),
    (["method.arch_lr=inf"], "method.arch_lr", "finite"),
    (["method.arch_lr=0"], "method.arch_lr", "must be positive"),
    (["method.arch_weight_decay=nan"], "method.arch_weight_decay", "finite"),
    (["tasks.loss_weights={normal: .inf}"], "tasks.loss_weights.normal", "finite"),
    (["seed=-1"], "seed", "non-negative"),
    (["data.seed=-3"], "data.seed", "non-negative"),
    (["train.device=cudax"], "train.device", "expected auto, cpu or cuda[:N]"),  # one rule, here and at run time
    (["train.device=cuda:x"], "train.device", "expected auto, cpu or cuda[:N]"),
    (["tasks.aux=[seg]"], "tasks.aux", "single-task training uses no auxiliary task; remove tasks.aux or choose a "
                                       "method"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, capsys, overrides, key, expected):
    run = tmp_path / "run"
    err = one_line_error(capsys, ["train", "quickstart", *SMALL, *overrides, f"out_dir={run}", "--quiet"])
    assert f"{key}:" in err and expected in err
    assert not run.exists()  # nothing written, no data generated
    with pytest.raises(ConfigError, match=key):
        validate(load_config("quickstart", overrides))


@pytest.mark.parametrize("name", ["quickstart", "demo"])
def test_packaged_configs_still_load(name):
    cfg = load_config(name)
    assert (cfg.method.name == "single") == (not cfg.tasks.aux)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_config_file_is_refused(tmp_path, capsys, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    err = one_line_error(capsys, ["train", str(path), f"out_dir={tmp_path / 'run'}"])
    assert str(path) in err and "empty" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="empty"):
        load_config(path)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", b"train:\n  epochs: 1\x00\x01\n"])
def test_a_binary_config_file_is_refused(tmp_path, capsys, content):
    path = tmp_path / "weights.yaml"
    path.write_bytes(content)
    err = one_line_error(capsys, ["train", str(path)])
    assert str(path) in err and "YAML" in err
    with pytest.raises(ConfigError, match="YAML"):
        load_config(path)
