"""Every bad input is one line naming the key or path (exit status 2 at the CLI), never a traceback."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_folder import write_folder
from test_readers import write_dataset

import auxnas.train
from auxnas.cli import build_parser, main
from auxnas.config import ConfigError, config_from_dict, load_config
from auxnas.data.mtan import NpyFolders, folder_layout
from auxnas.io import CheckpointError
from auxnas.methods import build_model
from auxnas.tasks import build_tasks
from auxnas.train import load_trained
from auxnas.validate import validate

NUM_CLASSES = {"seg": 13, "object": 10, "scene": 5}
ROOT = os.geteuid() == 0  # root writes into read-only folders: the read-only cases cannot be made here


def one_line_error(capsys, argv) -> str:
    """Run the CLI on ``argv``; it must fail with exit status 2 and one line on stderr, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auxnas") and "\n" not in err and "Traceback" not in err, err
    return err


def tiny(**sections) -> dict:
    """A tiny config as a dict, with ``sections`` merged in."""
    base = {
        "data": {"image_size": 32, "num_train": 16, "num_test": 8, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": []}, "model": {"backbone": "tiny_resnet"},
        "train": {"epochs": 1, "max_steps_per_epoch": 1},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


# -- configuration: refused before any work, naming the key and what it expects

#: a run of seconds, should a bad value be let through
SMALL = ["data.image_size=32", "data.num_train=16", "data.num_test=8", "data.batch_size=8", "train.epochs=1",
         "train.max_steps_per_epoch=1"]


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


# -- checkpoints: a file that is not a checkpoint of its own config


def checkpoint(path: Path, config: dict | None = None, weights: dict | None = None, **payload) -> Path:
    """Save an auxnas checkpoint of the tiny config (or ``config``), with ``weights`` or fresh ones."""
    cfg = config_from_dict(tiny())
    if weights is None:
        weights = build_model(cfg, build_tasks(cfg, NUM_CLASSES)).state_dict()
    torch.save({"config": config or cfg.to_dict(), "model": weights, "epoch": 1, "num_classes": NUM_CLASSES,
                **payload}, path)
    return path


def test_weights_that_do_not_fit_their_config_are_one_line(tmp_path, capsys):
    vgg = config_from_dict(tiny(model={"backbone": "tiny_vgg"})).to_dict()
    seg = config_from_dict(tiny(tasks={"primary": "seg"})).to_dict()
    cases = [
        (checkpoint(tmp_path / "other-backbone.pt", config=vgg), "do not fit"),
        (checkpoint(tmp_path / "other-classes.pt", config=seg, num_classes={"seg": 4}), "do not fit"),
        (checkpoint(tmp_path / "classes-text.pt", config=seg, num_classes="many"), "num_classes"),
        (checkpoint(tmp_path / "not-weights.pt", weights=[1, 2]), "model"),
    ]
    for path, expected in cases:
        with pytest.raises(CheckpointError, match=expected) as info:
            load_trained(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        err = one_line_error(capsys, ["evaluate", str(path), "--quiet"])
        assert str(path) in err and expected in err


@pytest.mark.parametrize("missing", ["num_classes", "epoch", "config", "model"])
def test_a_checkpoint_without_an_auxnas_key_is_one_line(tmp_path, capsys, missing):
    path = checkpoint(tmp_path / "ckpt.pt")
    payload = torch.load(path, weights_only=True)
    del payload[missing]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=missing):
        load_trained(path)
    err = one_line_error(capsys, ["evaluate", str(path)])
    assert str(path) in err and missing in err


def test_a_pickled_module_or_garbage_is_one_line(tmp_path, capsys):
    module, garbage = tmp_path / "module.pt", tmp_path / "garbage.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # torch's refusal of weights_only=True is many lines long
    garbage.write_bytes(bytes(range(256)))
    for path, expected in ((module, "holds Python objects"), (garbage, "cannot be read as a checkpoint")):
        err = one_line_error(capsys, ["evaluate", str(path)])
        assert str(path) in err and expected in err


def test_a_good_checkpoint_still_loads(tmp_path):
    cfg, model, payload = load_trained(checkpoint(tmp_path / "ok.pt"))
    assert cfg.model.backbone == "tiny_resnet" and payload["epoch"] == 1
    older = config_from_dict(tiny()).to_dict()
    older["tasks"]["aux"] = ["seg"]  # a single-task run of an older auxnas that listed (and never used) an aux task
    cfg, model, _ = load_trained(checkpoint(tmp_path / "older.pt", config=older))
    assert cfg.method.name == "single" and cfg.tasks.aux == [] and list(model.tasks) == ["normal"]


# -- folders that cannot be written


TRAIN = ["train", "quickstart", *SMALL, "--quiet"]


def test_a_file_valued_out_dir_is_one_line(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    for out_dir in (file, file / "run"):
        err = one_line_error(capsys, [*TRAIN, f"out_dir={out_dir}"])
        assert str(out_dir) in err and "choose another out_dir" in err
    assert file.read_text() == "x"


@pytest.mark.skipif(ROOT, reason="root can write into a read-only folder")
def test_a_read_only_out_dir_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for out_dir in (folder, folder / "run"):
            err = one_line_error(capsys, [*TRAIN, f"out_dir={out_dir}"])
            assert str(out_dir) in err and "choose another out_dir" in err
    finally:
        folder.chmod(0o755)


def test_a_file_valued_cache_folder_is_one_line(tmp_path, capsys, monkeypatch):
    file = tmp_path / "file"
    file.write_text("x")
    for cache in (file, file / "cache"):
        monkeypatch.setenv("AUXNAS_CACHE", str(cache))
        err = one_line_error(capsys, [*TRAIN, f"out_dir={tmp_path / 'run-env'}", "--overwrite"])
        assert str(cache) in err and "set data.cache_dir or AUXNAS_CACHE to a writable folder" in err
        err = one_line_error(capsys, [*TRAIN, f"out_dir={tmp_path / 'run-key'}", f"data.cache_dir={cache}",
                                      "--overwrite"])
        assert str(cache) in err and "set data.cache_dir or AUXNAS_CACHE to a writable folder" in err
        err = one_line_error(capsys, ["data", "preview", "--out", str(tmp_path / "p.png"), "--image-size", "16",
                                      "--num", "2"])
        assert str(cache) in err and "AUXNAS_CACHE" in err
    assert file.read_text() == "x"


@pytest.mark.skipif(ROOT, reason="root can write into a read-only folder")
def test_a_read_only_cache_folder_is_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for cache in (folder, folder / "cache"):
            monkeypatch.setenv("AUXNAS_CACHE", str(cache))
            err = one_line_error(capsys, [*TRAIN, f"out_dir={tmp_path / 'run'}", "--overwrite"])
            assert str(cache) in err and "set data.cache_dir or AUXNAS_CACHE to a writable folder" in err
    finally:
        folder.chmod(0o755)


# -- anything else that reaches the CLI


def test_an_unexpected_runtime_error_is_one_line_naming_the_command(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: something deep\n  with a second line")

    monkeypatch.setattr(auxnas.train, "evaluate", broken)
    monkeypatch.delenv("AUXNAS_DEBUG", raising=False)
    err = one_line_error(capsys, ["evaluate", str(tmp_path)])
    assert "unexpected" in err and "auxnas evaluate" in err and "CUDA error: something deep" in err
    assert "AUXNAS_DEBUG=1" in err


def test_auxnas_debug_re_raises(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("deep")

    monkeypatch.setattr(auxnas.train, "evaluate", broken)
    monkeypatch.setenv("AUXNAS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="deep"):
        main(["evaluate", str(tmp_path)])
    with pytest.raises(ConfigError, match="train.epochz"):
        main(["train", "quickstart", "train.epochz=1"])
    monkeypatch.setenv("AUXNAS_DEBUG", "0")
    assert main(["train", "quickstart", "train.epochz=1"]) == 2
    assert "AUXNAS_DEBUG" in build_parser().format_help()


def test_keyboard_interrupt_is_unchanged(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(auxnas.train, "evaluate", interrupted)
    assert main(["evaluate", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "auxnas: interrupted"


# -- dataset files whose values are wrong: one line naming the file, what it holds and what was expected


def _mtan(tmp_path: Path, name: str = "nyuv2_mtan") -> Path:
    return write_dataset(tmp_path / name, name)


def _edit(root: Path, folder: str, change, index: int = 1) -> None:
    """Replace ``root/train/folder/{index}.npy`` by ``change(its array)``."""
    path = root / "train" / folder / f"{index}.npy"
    np.save(path, change(np.load(path)))


def _nan_at(array: np.ndarray, value: float = np.nan) -> np.ndarray:
    array = array.copy()
    array[5, 6] = value
    return array


MTAN_VALUES = [
    ("normals stored as (n + 1) / 2", "normal", lambda n: (n + 1) / 2,
     r"normal/1\.npy: \d+ vectors are neither unit vectors nor zero \(invalid\): norms 0\.\d+\.\.1\.\d+, expected "
     r"0\.\.1\.1 \(e\.g\. pixel .*\); no component is negative: stored as \(n \+ 1\) / 2\? store the unit vectors, "
     r"2 \* v - 1$"),
    ("normals of norm 3", "normal", lambda n: 3 * n, r"normal/1\.npy: 752 vectors are neither unit vectors nor zero "
     r"\(invalid\): norms 3\.\.3, expected 0\.\.1\.1 \(e\.g\. pixel \(0, 4\) of norm 3\.000\)$"),
    ("NaN normals", "normal", _nan_at, r"normal/1\.npy: normals must be finite, got 1 NaN or infinite vectors; mark "
     r"invalid pixels with the zero vector$"),
    ("image in 0..255", "image", lambda x: x * 255, r"image/1\.npy: image values must be in \[0, 1\], got values in "
     r"\[0\.\d+, 25\d(\.\d+)?\]; 0\.\.255 values\? divide them by 255, or store uint8$"),
    ("image normalised", "image", lambda x: (x - 0.45) / 0.225, r"image/1\.npy: image values must be in \[0, 1\], got "
     r"values in \[-\d\.\d+, \d\.\d+\]; ImageNet-normalised\? store the \[0, 1\] image, auxnas normalises it$"),
    ("NaN depth", "depth", _nan_at, r"depth/1\.npy: depth must be finite and >= 0 \(0 = invalid\), got 1 NaN or "
     r"infinite values; mark invalid pixels with 0$"),
    ("negative depth", "depth", lambda d: d - 1, r"depth/1\.npy: depth must be finite and >= 0 \(0 = invalid\), got "
     r"values in \[-1, 8\.\d+\]; mark invalid pixels with 0$"),
    ("fractional labels", "label", lambda y: np.where(y == 3, 3.6, y), r"label/1\.npy: labels must be -1 \(ignore\) "
     r"or classes 0\.\.12, got non-integer values, e\.g\. 3\.6 at pixel \(\d+, \d+\)$"),
    ("NaN labels", "label", _nan_at, r"label/1\.npy: labels must be -1 \(ignore\) or classes 0\.\.12, got 1 NaN or "
     r"infinite values$"),
    ("normals channels first", "normal", lambda n: np.moveaxis(n, -1, 0), r"normal/1\.npy: expected shape "
     r"\(24, 32, 3\), got \(3, 24, 32\): its channels come first; store it channels last, \(H, W, C\) = "
     r"\(24, 32, 3\)$"),
]


@pytest.mark.parametrize(("folder", "change", "message"), [c[1:] for c in MTAN_VALUES], ids=[c[0] for c in MTAN_VALUES])
def test_mtan_files_of_wrong_values_are_one_line(tmp_path, folder, change, message):
    root = _mtan(tmp_path)
    _edit(root, folder, change)
    dataset = NpyFolders(root, "train", folder_layout("nyuv2_mtan"))
    dataset[0]  # the other files are fine
    with pytest.raises(ValueError, match=message) as info:
        dataset[1]
    assert "\n" not in str(info.value) and str(root / "train" / folder / "1.npy") in str(info.value)


def test_cityscapes_nan_disparity_is_one_line(tmp_path):
    root = _mtan(tmp_path, "cityscapes")
    _edit(root, "depth", lambda d: _nan_at(d, np.inf))
    with pytest.raises(ValueError, match=r"depth/1\.npy: disparity must be finite and >= 0 \(0 = invalid\), got 1 NaN "
                                         r"or infinite values; mark invalid pixels with 0$"):
        NpyFolders(root, "train", folder_layout("cityscapes"))[1]


def test_an_image_stored_channels_first_says_so(tmp_path):
    root = _mtan(tmp_path)
    for i in range(6):
        _edit(root, "image", lambda x: np.moveaxis(x, -1, 0), i)
    # it used to say "expected shape (3, 24, 3), got (3, 24, 32)"
    with pytest.raises(ValueError, match=r"train/image/0\.npy: expected an image of shape \(H, W, 3\), got "
                                         r"\(3, 24, 32\): its channels come first; store it channels last, "
                                         r"\(H, W, C\) = \(24, 32, 3\)$"):
        NpyFolders(root, "train", folder_layout("nyuv2_mtan"))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_dataset_file_stops_training_with_one_line(tmp_path, capsys, workers):
    """Also when a DataLoader worker reads the file (torch re-raises its error with the worker's traceback)."""
    root = _mtan(tmp_path)
    for i in range(6):
        _edit(root, "depth", _nan_at, i)
    err = one_line_error(capsys, ["train", "quickstart", "data.name=nyuv2_mtan", f"data.root={root}",
                                  "tasks.primary=seg", "tasks.aux=[depth]", "method.name=aux_head",
                                  f"data.num_workers={workers}", "data.batch_size=2", "train.epochs=1",
                                  f"out_dir={tmp_path / 'run'}", "--quiet"])
    assert "depth must be finite and >= 0 (0 = invalid), got 1 NaN or infinite values" in err
    assert str(root / "train" / "depth") in err


@pytest.mark.parametrize(("argv", "command"), [
    (["demo", "--quick"], "demo"), (["bench", "accuracy", "--preset", "smoke"], "bench accuracy"),
    (["bench", "cost"], "bench cost"), (["export", "RUN", "--out", "OUT"], "export"), (["evaluate", "RUN"], "evaluate"),
])
def test_single_process_commands_refuse_to_start_under_torchrun(argv, command, monkeypatch, capsys, tmp_path):
    """torchrun starts every command on every rank: a single-process one would write and time the same thing twice,
    or wait on collectives forever. It refuses in one line before doing anything."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "runs in one process, but torchrun started 2" in err
    assert f"`auxnas {command}` runs in one process" in err
    assert list(tmp_path.iterdir()) == []


# -- a run directory that cannot be resumed as it is


@pytest.mark.parametrize(("content", "expected"), [
    (b"name: x\ntrain: {epochs: 2\nseed: [\n", "not valid YAML"),
    (b"name: caf\xe9\n", "not UTF-8"),
])
def test_a_broken_run_config_on_resume_is_one_line(tmp_path, capsys, content, expected):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(content)
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert str(run / "config.yaml") in err and expected in err and "--overwrite" in err


def test_a_val_folder_without_the_primary_label_is_refused_before_training(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 8, "val": 4, "test": 4})
    shutil.rmtree(root / "val" / "seg")
    (root / "val" / "seg").mkdir()
    run = tmp_path / "run"
    err = one_line_error(capsys, ["train", "demo", "data.name=folder", f"data.root={root}", "data.batch_size=4",
                                  "tasks.primary=seg", "tasks.aux=[normal]", "method.name=aux_head",
                                  "model.backbone=tiny_resnet", "train.epochs=1", f"out_dir={run}", "--quiet"])
    assert f"{root / 'val'}: the validation split has no seg label" in err and "add seg labels" in err
    assert not (run / "last.pt").exists()  # refused before training


def test_resuming_a_finished_run_without_its_last_checkpoint_says_it_finished(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, f"out_dir={run}"]) == 0
    capsys.readouterr()
    (run / "last.pt").unlink()
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert f"{run}: the run finished (metrics.json) but its last.pt is missing" in err
    assert "stopped before its first epoch" not in err


@pytest.mark.parametrize(("env", "saved", "expected"), [
    ({}, False, "interrupted before the first epoch ended: nothing to resume from"),
    ({}, True, "continue with: auxnas train --resume {run}"),
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}, True,
     "continue with: torchrun --nproc_per_node 4 -m auxnas train --resume {run}"),
    ({"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}, True,
     "continue with: torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port PORT --nproc_per_node 8 -m "
     "auxnas train --resume {run} (on each node)"),
])
def test_the_interrupt_hint_advises_only_a_resume_that_works(tmp_path, capsys, monkeypatch, env, saved, expected):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    run.mkdir()
    if saved:
        (run / "last.pt").write_bytes(b"")
    monkeypatch.setattr(auxnas.train, "fit", interrupted)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main([*TRAIN, f"out_dir={run}"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "auxnas: interrupted; " + expected.format(run=run) if saved else expected in err
    assert saved or "--resume" not in err


def test_resuming_on_other_data_is_refused(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 10, "test": 4})
    run = tmp_path / "run"
    train = ["train", "demo", "data.name=folder", f"data.root={root}", "data.val_fraction=0.2", "data.batch_size=4",
             "tasks.primary=seg", "tasks.aux=[normal]", "method.name=aux_head", "model.backbone=tiny_resnet",
             "train.epochs=1", f"out_dir={run}", "--quiet"]
    assert main(train) == 0
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # the same data: resumes (a finished run ends)
    capsys.readouterr()
    for path in (root / "train").glob("*/9.*"):
        path.rename(path.with_stem("x9"))  # the same count, another image
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert f"{run / 'data.json'}: the data differ" in err and "train: 8 images then and now, but not the same" in err
    for path in (root / "train").glob("*/x9.*"):
        path.unlink()
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert "train: 8 images then, 7 now" in err


def test_a_run_that_failed_before_its_first_epoch_ended_is_simply_run_again(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 8, "val": 4, "test": 4})
    (root / "val" / "seg").rename(tmp_path / "seg")
    (root / "val" / "seg").mkdir()
    run = tmp_path / "run"
    train = ["train", "demo", "data.name=folder", f"data.root={root}", "data.batch_size=4", "tasks.primary=seg",
             "tasks.aux=[normal]", "method.name=aux_head", "model.backbone=tiny_resnet", "train.epochs=1",
             f"out_dir={run}", "--quiet"]
    one_line_error(capsys, train)
    assert (run / "config.yaml").is_file()  # the failed start wrote its config
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert "no last.pt to resume from" in err and "reused without --overwrite" in err
    (root / "val" / "seg").rmdir()
    (tmp_path / "seg").rename(root / "val" / "seg")
    assert main(train) == 0  # the corrected command runs again in the same folder, no --overwrite
    assert (run / "metrics.json").is_file()
    err = one_line_error(capsys, train)  # a run that finished an epoch is never replaced without --overwrite
    assert "holds files" in err


def test_resuming_in_a_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only file system (os.access says so, even for root): refused before anything starts writing, so no
    background writer thread fails after the error line."""
    import auxnas.engine.run_dir

    run = tmp_path / "run"
    assert main([*TRAIN, f"out_dir={run}"]) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    real_access = os.access
    monkeypatch.setattr(auxnas.engine.run_dir.os, "access",
                        lambda path, mode: False if Path(path) == run else real_access(path, mode))
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert f"{run}: cannot be written" in err and "copy the run folder" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_ctrl_c_while_torch_and_timm_import_is_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C during start-up, while the heavy modules import inside the command, ends in one line, exit 130."""
    import sys

    class InterruptedImport:
        def find_spec(self, name, path=None, target=None):
            if name == "auxnas.distributed":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "auxnas.distributed", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    assert main(["train", "quickstart", f"out_dir={tmp_path / 'run'}", "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["auxnas: interrupted"]
