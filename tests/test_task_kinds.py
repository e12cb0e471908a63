"""Tasks declared by kind under any name (``dataset.yaml``'s ``kind:``): the folder reader, the kinds' losses and
metrics, ``auxnas compare`` and export with a declared auxiliary, the other kinds in training, the random-target
control, partial labels, and the refusals; on a tiny folder dataset of 32 x 32 images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_data_folder import arrays, write_folder

from auxnas.cli import main
from auxnas.config import ConfigError, DataConfig, load_config
from auxnas.config.validate import validate
from auxnas.data import FolderImages, RandomTargets, build_splits
from auxnas.data.check import check_folder, format_report
from auxnas.data.folder import read_spec
from auxnas.engine.checkpoints import load_trained
from auxnas.export import export_primary, load_exported, read_export_spec
from auxnas.tasks import DenseRegression, ImageRegression, MultiLabel, Segmentation, build_task
from auxnas.train import fit
from auxnas.weighting import WEIGHTING_NAMES

SIZE = 32
#: seg (built-in, 3 classes) and four tasks declared by kind
TASKS = {
    "seg": {"classes": 3},
    "edges": {"kind": "dense_regression", "channels": 1, "loss": "l1", "invalid": "none", "scale": 255},
    "parts": {"kind": "segmentation", "classes": 5, "ignore": 255},
    "attrs": {"kind": "multilabel", "classes": 4},
    "colour": {"kind": "image_regression", "channels": 2, "folder": "mean_colour"},
}
#: tiny runs: 8 training and 2 validation images in batches of 4, one epoch, on the CPU
TINY = ["data.val_fraction=0.2", "data.batch_size=4", "model.backbone=tiny_resnet", "train.epochs=1",
        "train.device=cpu", "tasks.primary=seg"]


def labels(i: int) -> dict[str, np.ndarray]:
    """Image ``i``'s labels, computed from its pixels: seg the brightness tercile (top-left 4 x 4 ignored), edges the
    8-bit horizontal gradient, parts the red level in 5 steps, attrs which of R, G, B and grey average above 127,
    colour the mean red and green in [0, 1]."""
    rgb = arrays(i, (SIZE, SIZE))["image"].astype(np.float64)
    grey = rgb.mean(axis=2)
    seg = np.minimum(grey * 3 // 256, 2).astype(np.uint8)
    seg[:4, :4] = 255
    edges = np.zeros_like(grey)
    edges[:, 1:] = np.abs(np.diff(grey, axis=1))
    means = [*rgb.mean(axis=(0, 1)), grey.mean()]
    return {"seg": seg, "edges": np.round(edges).astype(np.uint8),
            "parts": np.minimum(rgb[..., 0] * 5 // 256, 4).astype(np.uint8),
            "attrs": np.array([m > 127 for m in means], dtype=np.int64),
            "colour": (rgb[..., :2].mean(axis=(0, 1)) / 255).astype(np.float32)}


def write_kinds_folder(root: Path, splits: dict[str, int] | None = None, missing: dict | None = None,
                       tasks: dict | None = None) -> Path:
    """A folder dataset of ``tasks`` (default ``TASKS``): the images of ``write_folder`` at 32 x 32, and each task's
    labels (``labels``): PNG seg, edges and parts, .txt attrs, .npy colour. ``missing``: task -> image numbers
    without that label."""
    splits = splits or {"train": 10, "test": 4}
    tasks = tasks or TASKS
    sizes = {i: (SIZE, SIZE) for i in range(max(splits.values()))}
    write_folder(root, splits, sizes=sizes, spec={"tasks": {}})
    (root / "dataset.yaml").write_text(yaml.safe_dump({"tasks": tasks}, sort_keys=False))
    for split, count in splits.items():
        for task, settings in tasks.items():
            folder = root / split / settings.get("folder", task)
            folder.mkdir()
            for i in set(range(count)) - set((missing or {}).get(task, ())):
                value = labels(i)[task]
                if task == "attrs":
                    (folder / f"{i}.txt").write_text(" ".join(str(v) for v in value) + "\n")
                elif task == "colour":
                    np.save(folder / f"{i}.npy", value)
                else:
                    Image.fromarray(value).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def kinds_root(tmp_path_factory) -> Path:
    return write_kinds_folder(tmp_path_factory.mktemp("kinds") / "data")


def overrides(root: Path, *extra: str) -> list[str]:
    return ["data.name=folder", f"data.root={root}", *TINY, *extra]


# --- the folder reader --------------------------------------------------------------------------------------------


def test_declared_tasks_read_with_their_kinds(kinds_root):
    spec = read_spec(kinds_root)
    assert spec.kinds == {"seg": "segmentation", "edges": "dense_regression", "parts": "segmentation",
                          "attrs": "multilabel", "colour": "image_regression"}
    assert spec.num_classes == {  # the task table: a built-in task's class count, the others' declarations
        "seg": 3, "edges": {"kind": "dense_regression", "invalid": "none", "channels": 1, "loss": "l1"},
        "parts": {"kind": "segmentation", "classes": 5}, "attrs": {"kind": "multilabel", "classes": 4},
        "colour": {"kind": "image_regression", "channels": 2}}
    sample, truth = FolderImages(kinds_root, "train")[3], labels(3)
    assert torch.equal(sample["seg"], torch.from_numpy(truth["seg"]).long())
    assert sample["edges"].shape == (1, SIZE, SIZE) and sample["edges"].dtype == torch.float32
    assert torch.allclose(sample["edges"][0], torch.from_numpy(truth["edges"] / 255).float())  # 8-bit PNG / scale
    assert torch.equal(sample["parts"], torch.from_numpy(truth["parts"]).long())
    assert sample["attrs"].tolist() == truth["attrs"].tolist() and sample["attrs"].dtype == torch.float32
    assert torch.equal(sample["colour"], torch.from_numpy(truth["colour"]))
    tasks = {name: build_task(name, spec.num_classes) for name in spec.tasks}
    assert [type(t) for t in tasks.values()] == [Segmentation, DenseRegression, Segmentation, MultiLabel,
                                                 ImageRegression]
    assert [t.out_channels for t in tasks.values()] == [3, 1, 5, 4, 2]


def test_augmentation_moves_a_declared_dense_label_with_the_image(kinds_root):
    """A flip mirrors edges and parts as it mirrors seg; the image-level labels stay as they are."""
    dataset = FolderImages(kinds_root, "train").subset(range(10), augment=True)
    plain = FolderImages(kinds_root, "train")[0]
    torch.manual_seed(0)
    flipped = next(s for s in (dataset[0] for _ in range(60)) if torch.equal(s["seg"], plain["seg"].flip(-1)))
    assert torch.equal(flipped["edges"], plain["edges"].flip(-1))
    assert torch.equal(flipped["parts"], plain["parts"].flip(-1))
    assert torch.equal(flipped["attrs"], plain["attrs"]) and torch.equal(flipped["colour"], plain["colour"])


def test_resize_resizes_declared_dense_labels_only(kinds_root):
    splits = build_splits(DataConfig(name="folder", root=str(kinds_root), resize=True, image_size=16), progress=False)
    sample = splits.test[0]
    assert sample["image"].shape == (3, 16, 16) and sample["parts"].shape == (16, 16)
    assert sample["edges"].shape == (1, 16, 16) and sample["colour"].shape == (2,) and sample["attrs"].shape == (4,)
    assert set(sample["parts"].unique().tolist()) <= set(range(5))  # nearest: classes stay classes


def test_data_check_reports_declared_tasks(kinds_root):
    report = check_folder(kinds_root, progress=False)
    assert report["problems"] == []
    assert report["tasks"]["edges"] == {"folder": "edges", "kind": "dense_regression", "invalid": "none",
                                        "channels": 1, "loss": "l1", "scale": 255.0}
    assert report["tasks"]["seg"] == {"folder": "seg", "classes": 3, "ignore": 255}
    train = report["splits"]["train"]["tasks"]
    everything = [labels(i) for i in range(10)]
    assert train["edges"]["valid_fraction"] == 1.0
    assert train["edges"]["max"] == pytest.approx(max(int(t["edges"].max()) for t in everything) / 255)
    assert train["parts"]["pixels_per_class"] == np.bincount(
        np.concatenate([t["parts"].ravel() for t in everything]), minlength=5).tolist()
    assert train["attrs"]["images_per_class"] == np.sum([t["attrs"] for t in everything], axis=0).tolist()
    assert train["colour"]["min"] == pytest.approx(min(t["colour"].min() for t in everything))
    text = format_report(report)
    assert "edges (folder edges, kind dense_regression" in text and "attrs" in text
    assert main(["data", "check", str(kinds_root), "--quiet"]) == 0


@pytest.mark.parametrize("mutate, index, message", [
    (lambda r: np.save(r / "train/mean_colour/1.npy", np.zeros(3, np.float32)), 1,
     r"train/mean_colour/1\.npy: expected 2 numbers, got 3 values$"),
    (lambda r: (r / "train/attrs/2.txt").write_text("1 0 2 0"), 2,
     r"train/attrs/2\.txt: expected 4 labels 0 or 1 \(one per class\), got 2$"),
    (lambda r: Image.fromarray(np.eye(SIZE, dtype=np.uint8)[..., None].repeat(2, 2)).save(r / "train/edges/3.png"), 3,
     r"train/edges/3\.png: expected a one-channel label image, got shape \(32, 32, 2\)$"),
    (lambda r: Image.fromarray(np.full((SIZE, SIZE), 5, np.uint8)).save(r / "train/parts/4.png"), 4,
     r"train/parts/4\.png: labels must be classes 0\.\.4 or the ignore value 255, got 5$"),
])
def test_bad_declared_label_files_are_named(tmp_path, mutate, index, message):
    root = write_kinds_folder(tmp_path / "data", {"train": 6, "test": 1})
    mutate(root)
    with pytest.raises(ValueError, match=message):
        FolderImages(root, "train")[index]
    assert [re.search(message, p) is not None for p in check_folder(root, progress=False)["problems"]] == [True]


def test_dense_regression_npy_with_nan_as_invalid(tmp_path):
    root = write_kinds_folder(tmp_path / "data", {"train": 3, "test": 1}, tasks={"seg": {"classes": 3}})
    height = {"kind": "dense_regression", "channels": 2, "invalid": "nan"}
    (root / "dataset.yaml").write_text(yaml.safe_dump({"tasks": {"seg": {"classes": 3}, "height": height}}))
    values = np.arange(SIZE * SIZE * 2, dtype=np.float32).reshape(SIZE, SIZE, 2)
    values[0, 0, 1] = np.nan
    for split, count in (("train", 3), ("test", 1)):
        (root / split / "height").mkdir()
        for i in range(count):
            np.save(root / split / "height" / f"{i}.npy", values)
    target = FolderImages(root, "train")[0]["height"]
    assert target.shape == (2, SIZE, SIZE) and torch.equal(target[0], torch.from_numpy(values[..., 0]))
    task = build_task("height", read_spec(root).num_classes)
    assert int(task.loss_normaliser(target[None])) == 2 * SIZE * SIZE - 1
    pred = target[None].nan_to_num(0.0) + 1.5
    metric = task.new_metric()
    metric.update(pred, target[None])
    assert metric.compute() == pytest.approx({"abs_err": 1.5, "rmse": 1.5})
    assert task.loss(pred, target[None]).item() == pytest.approx(1.5)
    values[1, 1, 0] = np.inf
    np.save(root / "train/height/1.npy", values)
    with pytest.raises(ValueError, match=r"train/height/1\.npy: height values must be finite or NaN \(invalid\), got "
                                         r"1 infinite values$"):
        FolderImages(root, "train")[1]


# --- the kinds' losses and metrics --------------------------------------------------------------------------------


def test_multilabel_metrics_are_pooled_hand_computed_values():
    task = MultiLabel(2, "attrs")
    logits = torch.tensor([[2.0, -1.0], [1.0, 3.0], [-1.0, 0.5], [-2.0, -3.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    metric = task.new_metric()
    metric.update(logits[:2], target[:2])
    other = task.new_metric()
    other.update(logits[2:], target[2:])
    metric.merge(other)
    # class 0: scores 2, 1, -1, -2 against 1, 0, 1, 0: AP = (1 + 2/3) / 2; class 1: 3, 0.5 positive, ranked 1 and 2: 1
    # decisions at 0: [1, 0], [1, 1], [0, 1], [0, 0]: TP 3, FP 1, FN 1, right 6 of 8
    out = metric.compute()
    assert out == pytest.approx({"map": ((1 + 2 / 3) / 2 + 1) / 2 * 100, "f1": 6 / 8 * 100, "acc": 75.0})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert task.loss(logits, target).item() == pytest.approx(expected.item())
    assert task.main_metric == "map" and task.higher_is_better["map"]


def test_regression_kinds_losses_and_metrics():
    dense = DenseRegression("edges", invalid=0, loss="mse")
    pred = torch.tensor([[[[1.0, 5.0], [2.0, 2.0]]]])
    target = torch.tensor([[[[2.0, 0.0], [4.0, 2.0]]]])  # errors 1, (invalid), 2, 0
    assert dense.loss(pred, target).item() == pytest.approx((1 + 4 + 0) / 3)
    metric = dense.new_metric()
    metric.update(pred, target)
    assert metric.compute() == pytest.approx({"abs_err": 1.0, "rmse": (5 / 3) ** 0.5})
    declared = {"edges": {"kind": "dense_regression", "invalid": "none", "loss": "mse"}}
    assert build_task("edges", declared).loss_name == "mse"  # the declared loss, unless tasks.losses names another
    assert build_task("edges", declared, loss="l1").loss_name == "l1"
    image = ImageRegression("colour", channels=2)
    assert image.loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == pytest.approx(1.5)
    assert not image.higher_is_better["abs_err"] and image.likelihood == "regression"


# --- training, compare and export ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(kinds_root, tmp_path_factory):
    """``auxnas compare`` of Aux-Head and Aux-NAS with the declared ``edges`` auxiliary (and ``parts`` declared too),
    two seeds."""
    out = tmp_path_factory.mktemp("compare-kinds") / "out"
    code = main(["compare", "demo", *overrides(kinds_root, "tasks.aux=[edges]"), "--methods", "aux_head", "aux_nas",
                 "--seeds", "2", "--out", str(out), "--quiet"])
    return code, out


def test_compare_trains_and_reports_a_declared_auxiliary(compared):
    code, out = compared
    assert code == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["info"]["rows"] == ["single", "aux_head", "aux_nas"]
    assert "edges" in summary["markdown"]
    runs = summary["runs"]
    assert len(runs) == 6
    for run in runs:
        trained = {"seg", "edges"} if run["row"] != "single" else {"seg"}
        assert set(run["final_train_losses"]) == trained
        assert all(np.isfinite(v) for v in run["final_train_losses"].values())
    assert all(run["train_labels"]["edges"] == 8 for run in runs if run["row"] != "single")


def test_the_export_of_a_run_with_a_declared_auxiliary_predicts_the_primary(compared, kinds_root):
    _, out = compared
    summary = json.loads((out / "compare.json").read_text())
    run_dir = next(r["run_dir"] for r in summary["runs"] if r["row"] == "aux_nas" and r["seed"] == 0)
    exported = out / "exports" / "aux_nas"
    spec = read_export_spec(exported)
    assert spec["task"] == "seg" and spec["num_classes"]["edges"]["kind"] == "dense_regression"
    network = load_exported(exported)
    _, model, _ = load_trained(run_dir)
    images = torch.stack([FolderImages(kinds_root, "test")[i]["image"] for i in range(4)])
    with torch.no_grad():
        predicted = network(images)
        assert predicted.shape == (4, 3, SIZE, SIZE)
        assert torch.allclose(predicted, model.eval()(images)["seg"], atol=1e-5)


def test_a_declared_primary_exports_and_loads_without_the_dataset(tmp_path):
    root = write_kinds_folder(tmp_path / "data", {"train": 10, "test": 2})
    cfg = load_config("demo", overrides(root, "tasks.primary=edges", "tasks.aux=[]", "method.name=single",
                                        f"out_dir={tmp_path / 'run'}"))
    fit(validate(cfg), progress=False)
    export_primary(tmp_path / "run", tmp_path / "export")
    images = torch.stack([FolderImages(root, "test")[i]["image"] for i in range(2)])
    shutil.rmtree(root)
    spec = read_export_spec(tmp_path / "export")
    assert spec["task"] == "edges" and spec["num_classes"] == {
        "seg": 3, "edges": {"kind": "dense_regression", "invalid": "none", "channels": 1, "loss": "l1"},
        "parts": {"kind": "segmentation", "classes": 5}, "attrs": {"kind": "multilabel", "classes": 4},
        "colour": {"kind": "image_regression", "channels": 2}}
    network = load_exported(tmp_path / "export")
    _, model, _ = load_trained(tmp_path / "run")
    with torch.no_grad():
        assert torch.allclose(network(images), model.eval()(images)["edges"], atol=1e-5)
    assert network(images).shape == (2, 1, SIZE, SIZE)


@pytest.mark.parametrize("method, weighting", [
    *((m, "equal") for m in ("aux_module", "adashare", "adashare_aux")), *(("aux_head", w) for w in WEIGHTING_NAMES)])
def test_every_method_and_weighting_trains_declared_auxiliaries(kinds_root, tmp_path, method, weighting):
    cfg = validate(load_config("demo", overrides(kinds_root, "tasks.aux=[edges, parts]", f"method.name={method}",
                                                 f"weighting.name={weighting}", f"out_dir={tmp_path / 'run'}")))
    result = fit(cfg, progress=False)
    losses = result.history[-1].train_task_losses
    assert set(losses) == {"seg", "edges", "parts"} and all(np.isfinite(v) for v in losses.values())
    assert np.isfinite(result.test_best["edges"]["abs_err"]) and np.isfinite(result.test_best["parts"]["miou"])


@pytest.mark.parametrize("aux, metric", [("attrs", "map"), ("colour", "abs_err")])
def test_image_level_kinds_train_as_auxiliaries(kinds_root, tmp_path, aux, metric):
    cfg = validate(load_config("demo", overrides(kinds_root, f"tasks.aux=[{aux}]", "method.name=aux_head",
                                                 "weighting.name=uncertainty", "weighting.options={form: kendall}",
                                                 f"out_dir={tmp_path / 'run'}")))
    result = fit(cfg, progress=False)
    assert set(result.history[-1].train_task_losses) == {"seg", aux}
    assert np.isfinite(result.test_best[aux][metric]) and result.test_best[aux]["num_images"] == 4
    assert result.conventions[aux] == {"loss": "binary_cross_entropy" if aux == "attrs" else "l1"}


def test_random_targets_on_a_declared_dense_task(kinds_root, tmp_path):
    cfg = load_config("demo", overrides(kinds_root, "tasks.aux=[edges]", "method.name=aux_head",
                                        "data.random_targets=[edges]", "data.augment=false",
                                        f"out_dir={tmp_path / 'run'}"))
    splits = build_splits(validate(cfg).data, progress=False)
    randomised = splits.train.dataset  # inside the folder's label masks (PartiallyLabelled)
    assert isinstance(randomised, RandomTargets)
    plain, fake = randomised.dataset[0], splits.train[0]
    assert fake["edges"].shape == plain["edges"].shape and not torch.equal(fake["edges"], plain["edges"])
    assert torch.equal(fake["edges"].flatten().sort().values, plain["edges"].flatten().sort().values)  # shuffled
    assert torch.equal(splits.train[0]["edges"], fake["edges"])  # fixed across epochs
    assert torch.equal(fake["seg"], plain["seg"])  # the primary keeps its labels
    result = fit(cfg, progress=False)
    assert np.isfinite(result.history[-1].train_task_losses["edges"])


def test_partial_labels_with_a_declared_auxiliary(tmp_path):
    root = write_kinds_folder(tmp_path / "data", missing={"parts": [1, 2]})
    cfg = load_config("demo", overrides(root, "tasks.aux=[parts]", "method.name=aux_g",
                                        "data.labelled_fraction={seg: 0.5, parts: 0.5}",
                                        f"out_dir={tmp_path / 'run'}"))
    splits = build_splits(validate(cfg).data, progress=False)
    own = splits.train.dataset.label_masks()["parts"]
    counts = splits.train_label_counts(["seg", "parts"])
    assert counts == {"seg": 4, "parts": round(0.5 * own.sum())} and own.sum() < 8
    result = fit(cfg, progress=False)
    assert result.train_labels == counts
    assert np.isfinite(result.test_best["parts"]["miou"])


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tasks, message", [
    ({"edges": {"kind": "edge_map"}}, r"dataset\.yaml: tasks\.edges\.kind: unknown kind 'edge_map'; valid kinds: "
                                      r"segmentation, dense_regression, normals"),
    ({"parts": {"kind": "segmentation"}}, r"dataset\.yaml: tasks\.parts\.classes: required for parts \(a segmentation "
                                          r"task\): the number of classes$"),
    ({"edges": {"kind": "dense_regression"}}, r"tasks\.edges\.invalid: required for edges \(a dense_regression task\)"),
    ({"image": {"kind": "segmentation", "classes": 2}}, r"tasks\.image: 'image' cannot name a task \(reserved: image, "
                                                        r"rgb, labelled\)"),
    ({"rgb": {"kind": "dense_regression", "invalid": 0}}, r"tasks\.rgb: 'rgb' cannot name a task"),
    ({"edges": {"kind": "dense_regression", "invalid": "zero"}}, r"tasks\.edges\.invalid: expected none, nan or a "
                                                                 r"number"),
    ({"edges": {"kind": "dense_regression", "invalid": 0, "classes": 3}}, r"tasks\.edges\.classes: unknown key; valid "
                                                                          r"keys of edges: folder, invalid, channels, "
                                                                          r"scale, kind, loss$"),
    ({"edges": {"kind": "dense_regression", "invalid": 0, "loss": "huber"}},
     r"tasks\.edges\.loss: unknown loss 'huber' for task edges; valid: l1, mse$"),
    ({"depth": {"kind": "dense_regression", "invalid": 0}}, r"tasks\.depth\.kind: depth is the built-in depth task; "
                                                            r"give your dense_regression task another name"),
    ({"sky": {"classes": 2}}, r"tasks\.sky: unknown task; valid tasks: seg, normal, depth, disparity, object, scene, "
                              r"or any other name with a kind \(segmentation,"),
])
def test_bad_declarations_are_refused_naming_the_key(tmp_path, tasks, message):
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump({"tasks": tasks}))
    with pytest.raises(ValueError, match=message):
        read_spec(tmp_path)


@pytest.mark.parametrize("extra, message", [
    ("tasks.aux=[edgez]", "tasks.aux[0]: unknown task 'edgez'; valid tasks: seg, edges, parts, attrs, colour"),
    ("tasks.losses={edges: ssi}", "tasks.losses.edges: unknown loss 'ssi' for task edges; valid: l1, mse"),
    ("data.random_targets=[edgez]", "data.random_targets: unknown task 'edgez'; valid tasks: seg, edges, parts"),
    ("data.labelled_fraction={partz: 0.5}", "data.labelled_fraction.partz: unknown task; valid tasks: seg, edges"),
    ("tasks.aux=[depth]", "tasks.aux[0]: dataset folder has no 'depth' targets"),
])
def test_config_refuses_names_the_dataset_does_not_declare(kinds_root, tmp_path, capsys, extra, message):
    args = overrides(kinds_root, "tasks.aux=[edges]", extra, f"out_dir={tmp_path / 'run'}")
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(load_config("demo", args))
    assert main(["train", "demo", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "run").exists()
