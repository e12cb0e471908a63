"""Train-time model -> deployable primary-only network, with the equivalence checks.

``export_primary`` writes ``model.safetensors`` (the primary network's weights),
``exported.yaml`` (what ``load_exported`` needs to rebuild it), ``export_report.json``
and, on request, the network in deployment formats (``FORMATS``: TorchScript,
ONNX, a ``torch.export`` program; each with a dynamic batch size, each loaded
back and checked against the PyTorch network), after verifying that

1. every auxiliary-to-primary link strength is below ``threshold`` (else it
   refuses, naming the links, unless ``force``);
2. the exported network's outputs equal the trained model's primary outputs
   with a2p links cut, on real test images;
3. its parameter count and FLOPs equal those of the single-task network of the
   same configuration (with ``fusion_norm: bn_relu`` the kept norm/ReLU ops are
   reported as exact extras instead).

Check 2 holds by construction; what the cut itself changes (primary outputs and
metrics of the uncut vs the cut train-time model on the validation split) is
measured and reported under ``a2p_cut``: a small strength does not bound it, as
the fusion weights that multiply it are free.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from .backbones import Branch, build_branch, min_image_side
from .data import build_splits
from .engine.checkpoints import load_trained
from .engine.loaders import make_loader
from .engine.run_dir import RUN_FILES
from .errors import ExportError
from .export_options import FORMATS, check_threshold, deployment_contract, written_by_export
from .measure import count_flops, count_parameters
from .methods import MultiTaskModel
from .methods.adashare import skipped_cell
from .methods.aux_nas import FusionPost
from .storage import atomic_write, check_output_folder, file_mode, listed, write_json, write_text
from .tasks import build_task

#: max |exported - trained| allowed on real inputs (float32 round-off only)
OUTPUT_TOLERANCE = 1e-5
#: max |deployment format - PyTorch network| (other runtimes order float operations differently)
FORMAT_TOLERANCE = 1e-4
#: ONNX weights above this many bytes go to ``model.onnx.data`` beside ``model.onnx`` (a protobuf file stops at
#: 2 GiB; torch's exporter uses the same bound); below it ``model.onnx`` is one self-contained file
ONNX_EMBED_LIMIT = 1536 * 2**20


@torch.no_grad()
def _a2p_cut_effect(model: MultiTaskModel, loader: DataLoader) -> dict[str, Any]:
    """What cutting the a2p links changes on every image of ``loader``: max |uncut - cut| of the primary
    outputs, and the primary's pooled metrics of the uncut and the cut model (eval mode both), in
    ``evaluate_model``'s form."""
    primary = model.primary
    task = model.tasks[primary]
    uncut_metric, cut_metric = task.new_metric(), task.new_metric()
    diff, count, labelled = 0.0, 0, 0
    for batch in loader:
        uncut = model(batch["image"], cut_a2p=False)[primary]
        cut = model(batch["image"], cut_a2p=True)[primary]
        diff = max(diff, float((uncut - cut).abs().max()))
        labelled += task.update_metric(uncut_metric, uncut, batch)
        task.update_metric(cut_metric, cut, batch)
        count += batch["image"].shape[0]
    return {"images": "the whole validation split", "num_val_images": count, "max_abs_diff_val": diff,
            "val_metrics_uncut": {**uncut_metric.compute(), "num_images": labelled},
            "val_metrics_cut": {**cut_metric.compute(), "num_images": labelled}}


@torch.no_grad()
def _post_elementwise_ops(network: Branch, cells: list[int], example: torch.Tensor) -> int:
    """Element-wise ops of the kept norm + ReLU (scale, shift, max per element), which FLOP counters skip."""
    counts = []
    hooks = [network.cells[i][1].register_forward_hook(lambda m, i, o: counts.append(o.numel())) for i in cells]
    network.eval()
    network(example)
    for hook in hooks:
        hook.remove()
    return 3 * sum(counts)


def _quietly(write: Any) -> Any:
    """Run ``write`` without the exporters' progress chatter and tracing warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return write()


def write_format(network: nn.Module, example: torch.Tensor, fmt: str, path: Path, min_side: int | None = None) -> None:
    """Write ``network`` (eval mode) in deployment format ``fmt`` to ``path``, with a dynamic batch size and, with
    ``min_side`` (a network that takes any image size from that side on: every CNN), a dynamic height and width
    (ONNX only: strict ``torch.export`` specialises the sizes where a feature map shrinks to one pixel, and
    TorchScript is traced at ``example``'s size).

    ONNX embeds the weights, so the file runs wherever it is copied; weights above ``ONNX_EMBED_LIMIT`` go to
    ``<path>.data`` beside it, which must travel with it."""
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if min_side is not None:
        dims |= {2: torch.export.Dim("height", min=min_side), 3: torch.export.Dim("width", min=min_side)}
    if fmt == "torchscript":
        _quietly(lambda: torch.jit.trace(network, example).save(str(path)))
    elif fmt == "pt2":
        program = _quietly(lambda: torch.export.export(network, (example,), dynamic_shapes=(dims,)))
        torch.export.save(program, str(path))
    elif fmt == "onnx":
        try:
            import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
        except ImportError:
            raise ExportError("--format onnx needs the onnx packages: pip install 'auxnas[export]'") from None
        program = _quietly(lambda: torch.onnx.export(network, (example,), input_names=["image"],
                                                     output_names=["output"], dynamic_shapes=(dims,),
                                                     dynamo=True, verbose=False))
        size = sum(t.numel() * t.element_size() for t in network.state_dict().values())
        _quietly(lambda: program.save(str(path), external_data=size > ONNX_EMBED_LIMIT))
    else:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")


def run_format(fmt: str, path: Path, images: torch.Tensor) -> torch.Tensor:
    """The outputs of the ``fmt`` file at ``path`` on ``images``, run by its own runtime."""
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still what many deploy
            return torch.jit.load(str(path), map_location="cpu")(images)
    if fmt == "pt2":
        with torch.no_grad():
            return torch.export.load(str(path)).module()(images)
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("checking an ONNX export needs onnxruntime: pip install 'auxnas[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])


def _check_formats(formats: Sequence[str]) -> list[str]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; valid: {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def _check_out_dir(out: Path, source: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an ``out`` the export of ``source`` must not write: a symbolic link, a file, a training run folder, a
    folder holding ``source``, a folder holding anything an export does not write, or an earlier export unless
    ``overwrite``.

    The export replaces ``out`` as a whole, so it never removes a file it did not write, nor a run, nor follows a
    link into another folder."""
    source = Path(source)

    def claim(folder: Path) -> str | None:
        run_files = [name for name in RUN_FILES if (folder / name).exists()]
        if "config.yaml" in run_files and len(run_files) > 1:
            return f"a training run ({', '.join(run_files)}), and an export never writes into a run"
        if source.resolve().is_relative_to(folder.resolve()):
            return f"{source}, which this export reads, and an export never writes over its source"
        foreign = [p.name + ("/" if p.is_dir() else "") for p in sorted(folder.iterdir()) if not written_by_export(p)]
        if foreign:
            return f"files an export does not write ({listed(folder, foreign)}), and --overwrite replaces only an " \
                   "earlier export"
        return None if overwrite else "an earlier export (pass --overwrite, overwrite=True, to replace it)"

    beside = source if source.is_dir() else source.parent
    check_output_folder(out, claim, f"choose another --out, e.g. {beside / 'export'}")


def export_primary(
    path: str | os.PathLike, out_dir: str | os.PathLike, threshold: float = 0.01, force: bool = False,
    num_inputs: int = 8, formats: Sequence[str] = (), overwrite: bool = False,
) -> dict[str, Any]:
    """Export the primary network of a run directory or checkpoint to ``out_dir``; return the report.

    ``threshold``: the largest a2p strength that may be cut, a finite number in [0, 1). ``formats``: deployment
    formats written beside the safetensors weights (``FORMATS``), each loaded back by its runtime and compared
    with the PyTorch network at two batch sizes. The folder is written in a temporary folder beside it and moved
    into place. ``out_dir`` must not be a symbolic link, a training run or hold the exported run
    (``_check_out_dir``); a non-empty one is replaced only if it holds an earlier export and nothing else, and only
    with ``overwrite``.
    """
    threshold = check_threshold(threshold)
    formats = _check_formats(formats)
    out = Path(out_dir)
    _check_out_dir(out, path, overwrite)
    cfg, model, payload = load_trained(path)
    model.eval()
    links = model.a2p_links()
    above = [link for link in links if link["strength"] >= threshold]
    if above and not force:
        strong = ", ".join(
            f"{a['aux']}[{a['aux_cell']}]->primary[{a['primary_cell']}]={a['strength']:.4g}" for a in above[:10]
        )
        raise ExportError(
            f"{len(above)} auxiliary-to-primary link(s) have strength >= {threshold}: {strong}. Cutting them would "
            "change the primary network. Under Adam, once the penalty dominates, a link's logit falls by about the "
            "architecture learning rate per architecture step (docs/protocols.md): train for longer, with a larger "
            "method.arch_lr, or with method.arch_schedule=constant (the rate then does not decay with the "
            "network's schedule); a larger method.penalty_max helps only until the penalty dominates. Or pass "
            "--force."
        )
    network = model.primary_network().eval()
    min_side = min_image_side(cfg.model.backbone) if network.feature_format == "map" else None  # ViTs: fixed size

    splits = build_splits(cfg.data, progress=False)
    images = next(iter(make_loader(splits.test, num_inputs, False, cfg.seed)))["image"]
    with torch.no_grad():
        trained = model(images)  # eval mode: the model as deployed (a model with a2p links cuts them)
        diff = float((network(images) - trained[cfg.tasks.primary]).abs().max())
    a2p_cut = None  # nothing is cut without a2p links
    if links:
        val = make_loader(splits.val, cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
        a2p_cut = _a2p_cut_effect(model, val)

    task = model.tasks[cfg.tasks.primary]
    single = build_branch(cfg.model.backbone, task, image_size=cfg.data.image_size, dilated=cfg.model.dilated)
    example = images[:1]
    extras = model.export_extras()
    fused, skipped, shortcut = extras["fusion_post_cells"], extras["skipped_cells"], extras["shortcut_cells"]
    params = {"exported": count_parameters(network), "single_task": count_parameters(single),
              "train_time_model": count_parameters(model)}
    flops = {"exported": count_flops(network, example), "single_task": count_flops(single, example)}
    params["extra"] = params["exported"] - params["single_task"]
    flops["extra"] = flops["exported"] - flops["single_task"]
    expected_extra_params = sum(2 * network.cell_channels[i] for i in fused)
    checks = {
        "a2p_below_threshold": not above,
        "outputs_equal": diff <= OUTPUT_TOLERANCE,
        "params_equal_single_task": params["extra"] == 0,
        "flops_equal_single_task": flops["extra"] == 0,
    }
    report: dict[str, Any] = {
        "source": str(Path(path).resolve()), "method": cfg.method.name, "primary": task.name,
        "backbone": cfg.model.backbone,
        "epoch": payload["epoch"], "threshold": threshold, "forced": bool(above) and force,
        "a2p_links": links, "a2p_max": max((a["strength"] for a in links), default=None),
        "max_abs_diff": diff, "num_inputs": int(images.shape[0]), "tolerance": OUTPUT_TOLERANCE,
        "params": params, "flops_per_image": flops, "checks": checks, "kept_fusion_post_cells": fused,
        "a2p_cut": a2p_cut, "conventions": {task.name: task.conventions()},
    }
    if fused:
        report["kept_fusion_post"] = {
            "what": "BatchNorm + ReLU after each fused primary cell (method.fusion_norm = bn_relu)",
            "extra_params": params["extra"], "expected_extra_params": expected_extra_params,
            "extra_elementwise_ops_per_image": _post_elementwise_ops(network, fused, example),
        }
    failures = [name for name, ok in checks.items() if not ok and name != "a2p_below_threshold"]
    if fused:  # the extras are expected; they must be exactly the kept norms and nothing else
        failures = [f for f in failures if f != "params_equal_single_task"]
        if params["extra"] != expected_extra_params:
            failures.append("params_extra_is_kept_norms")
    report["skipped_cells"], report["shortcut_cells"] = skipped, shortcut
    if skipped:  # plain AdaShare: the primary skips these cells; cheaper by exactly them, less kept shortcuts
        failures = [f for f in failures if f not in ("params_equal_single_task", "flops_equal_single_task")]
        saved = sum(count_parameters(single.cells[i]) for i in skipped)
        saved -= sum(count_parameters(skipped_cell(single.cells[i], True)) for i in shortcut)
        if params["extra"] != -saved:
            failures.append("params_saved_are_skipped_cells")
        if flops["extra"] > 0:
            failures.append("flops_at_most_single_task")
    if failures:
        raise ExportError(f"export verification failed ({', '.join(failures)}): max |diff| {diff:.3g}, "
                          f"params {params}, FLOPs {flops}")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(staging, file_mode(0o777))
        state = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
        atomic_write(staging / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
        spec = {
            "backbone": cfg.model.backbone, "task": task.name, "num_classes": payload["num_classes"],
            "image_size": cfg.data.image_size, "dilated": cfg.model.dilated, "fusion_post_cells": fused,
            "skipped_cells": skipped, "shortcut_cells": shortcut, "task_options": task.conventions(),
        }
        spec["contract"] = deployment_contract(task.KIND, task.out_channels, cfg.data.image_size, min_side)
        write_text(staging / "exported.yaml", yaml.safe_dump(spec, sort_keys=False))
        report["formats"] = _write_formats(network, images, formats, staging, min_side)
        write_json(staging / "export_report.json", report)
        _check_out_dir(out, path, overwrite)  # again: the folder may have changed while the export ran
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


#: formats whose height and width are dynamic for a network that takes any image size (``write_format``)
SIZE_DYNAMIC_FORMATS = ("onnx",)


def _write_formats(network: nn.Module, images: torch.Tensor, formats: list[str], folder: Path,
                   min_side: int | None) -> dict[str, Any]:
    """Write each format, run it back on one image and on every test image, and (height and width dynamic) on
    images of another size; fail on a mismatch."""
    written = {}
    h, w = images.shape[-2:]
    sized = min_side is not None and any(fmt in SIZE_DYNAMIC_FORMATS for fmt in formats)  # a second size to check
    other = torch.randn(2, 3, h + 32, w + 64, generator=torch.Generator().manual_seed(0)) if sized else None
    with torch.no_grad():
        expected = network(images)
        expected_other = network(other) if sized else None
    for fmt in formats:
        path = folder / FORMATS[fmt]
        # traced at batch 2: torch.export specialises a batch of 1 to a constant; written under its own name (the
        # folder is the staging folder), as ONNX names its external weights after it
        dynamic = min_side if fmt in SIZE_DYNAMIC_FORMATS else None
        write_format(network, images[:2], fmt, path, dynamic)
        diffs = [float((run_format(fmt, path, images[:n]) - expected[:n]).abs().max()) for n in (1, len(images))]
        sizes = [[int(h), int(w)]]
        if dynamic is not None:
            diffs.append(float((run_format(fmt, path, other) - expected_other).abs().max()))
            sizes.append([int(h) + 32, int(w) + 64])
        diff = max(diffs)
        if not diff <= FORMAT_TOLERANCE:
            raise ExportError(f"{path}: {fmt} outputs differ from the PyTorch network by {diff:.3g} "
                              f"(tolerance {FORMAT_TOLERANCE})")
        files = sorted(p.name for p in folder.iterdir() if p.name.startswith(FORMATS[fmt]))
        written[fmt] = {"file": FORMATS[fmt], "files": files, "max_abs_diff": diff,
                        "batch_sizes_checked": [1, len(images)], "image_sizes_checked": sizes,
                        "dynamic_image_size": dynamic is not None}
    return written


def _export_file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; is {directory} a directory written by `auxnas export`?")
    return path


#: exported.yaml's keys and their types (earlier exports lack the optional ones)
SPEC_KEYS = {"backbone": str, "task": str, "num_classes": dict, "image_size": int, "dilated": bool,
             "fusion_post_cells": list}
OPTIONAL_SPEC_KEYS = {"skipped_cells": list, "shortcut_cells": list, "task_options": dict, "contract": dict}


def read_export_spec(directory: str | os.PathLike) -> dict[str, Any]:
    """What an export directory's network is: backbone, task, class counts, image size, kept fusion norms.

    A file that is not YAML, or lacks a key or has one of the wrong type, raises ``ExportError`` naming it."""
    path = _export_file(Path(directory), "exported.yaml")
    try:
        spec = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ExportError(f"{path}: not valid YAML ({err}); export the run again") from None
    if not isinstance(spec, dict):
        raise ExportError(f"{path}: expected a mapping of {', '.join(SPEC_KEYS)}; export the run again")
    for key, kind in {**SPEC_KEYS, **OPTIONAL_SPEC_KEYS}.items():
        if (key in SPEC_KEYS or key in spec) and not isinstance(spec.get(key), kind):
            problem = "missing" if key not in spec else f"expected a {kind.__name__}, got {spec[key]!r}"
            raise ExportError(f"{path}: {key}: {problem}; export the run again")
    return spec


def load_exported(directory: str | os.PathLike) -> nn.Module:
    """The exported primary network of ``directory`` (a plain ``Branch`` in eval mode)."""
    directory = Path(directory)
    spec, weights_path = read_export_spec(directory), _export_file(directory, "model.safetensors")
    try:
        task = build_task(spec["task"], spec["num_classes"], **spec.get("task_options", {}))  # older: defaults
        network = build_branch(spec["backbone"], task, image_size=spec["image_size"], dilated=spec["dilated"])
        for i in spec.get("skipped_cells", []):
            network.cells[i] = skipped_cell(network.cells[i], i in spec.get("shortcut_cells", []))
        for i in spec["fusion_post_cells"]:
            post = FusionPost(network.cell_channels[i], network.feature_format)
            network.cells[i] = nn.Sequential(network.cells[i], post)
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise ExportError(f"{directory / 'exported.yaml'}: does not describe a network ({err}); export the run "
                          "again") from None
    try:
        weights = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own error types for a corrupt or truncated file
        raise ExportError(f"{weights_path}: unreadable safetensors file ({err}); export the run again") from None
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise ExportError(f"{weights_path}: weights do not match exported.yaml: {err}") from None
    return network.eval()
