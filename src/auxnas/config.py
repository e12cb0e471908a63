"""Typed experiment configuration, loaded from YAML with ``key=value`` overrides.

Every YAML key maps onto a dataclass field. Unknown keys and values of the wrong
type are rejected with a :class:`ConfigError` that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PACKAGED_CONFIGS = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    """Dataset, splits and loading."""

    #: synthetic: generated scenes; nyuv2_mtan, cityscapes: the MTAN-preprocessed folders under ``root``
    #: (docs/datasets.md)
    name: Literal["synthetic", "nyuv2_mtan", "nyuv2_nddr", "cityscapes", "taskonomy", "folder"] = "synthetic"
    #: folder of a real dataset (``ROOT/{train,val}/...``); unused by synthetic
    root: str | None = None
    #: cityscapes: segmentation with 7 classes (``label_7/``) or 19 (``label_19/``)
    cityscapes_classes: Literal[7, 19] = 7
    #: taskonomy: the building split, a CSV with columns id,train,val,test and a 1 in each building's split column
    #: (Taskonomy's train_val_test_{tiny,medium,full,fullplus}.csv); a relative path is taken from ``root``.
    #: Taskonomy is resized to ``image_size`` square (docs/datasets.md)
    taskonomy_split: str = "train_val_test_tiny.csv"
    #: synthetic: side of the square images; taskonomy: the side every image is resized to. The other real
    #: datasets keep their native (non-square) resolution and ignore it; ViT backbones, whose position embedding is
    #: sized from it, are refused on real datasets
    image_size: int = 64
    #: real datasets: resize every image and dense label to data.image_size squares (the Aux-NAS authors' ViT
    #: protocol: 224); this is what lets ViT backbones run on them. Taskonomy is always resized
    resize: bool = False
    #: synthetic: number of training / test images; real datasets ignore both and read every image of
    #: their train / val folders
    num_train: int = 2000
    num_test: int = 500
    #: fraction of the training images held out for model selection
    val_fraction: float = 0.1
    #: seed of the dataset itself (scene generation), independent of the training seed
    seed: int = 0
    #: where generated datasets are cached; None -> $AUXNAS_CACHE or ~/.cache/auxnas
    cache_dir: str | None = None
    #: images per step: the global batch; under torchrun each of the N processes loads batch_size / N (N must
    #: divide it; docs/distributed.md)
    batch_size: int = 32
    #: images per process and step; when set, the global batch is this times the number of processes (it replaces
    #: batch_size, and the run records the resulting batch_size): for a global batch N does not divide
    batch_size_per_device: int | None = None
    num_workers: int = 0
    augment: bool = True
    #: task -> fraction of the training images that keep its label (a deterministic subset per task and data.seed,
    #: nested: the 10 % subset lies inside the 30 % one); tasks not listed keep every label. Validation and test
    #: images always carry every label.
    labelled_fraction: dict[str, float] = field(default_factory=dict)
    #: oversample the images that carry the primary label so that they make up this share of every epoch's draws
    #: (each one seen every epoch); null: off, every image once per epoch
    oversample_primary: float | None = None
    #: tasks whose training targets are replaced by random ones (a noise control for auxiliary tasks: a method
    #: that prunes what it does not need should not suffer from them); never the primary task
    random_targets: list[str] = field(default_factory=list)


@dataclass
class TasksConfig:
    """Which task is primary, which are auxiliary, and their loss weights."""

    primary: str = "normal"
    aux: list[str] = field(default_factory=list)
    #: task name -> loss weight; tasks not listed weigh 1; weights of tasks the run does not train are unused
    loss_weights: dict[str, float] = field(default_factory=dict)
    #: task name -> its loss, e.g. {depth: ssi, disparity: mse, object: l2_soft}; tasks not listed use their
    #: default (docs/tasks.md lists every task's losses, default first)
    losses: dict[str, str] = field(default_factory=dict)
    #: normals metric: the angle between unit vectors ("unit"), or the NDDR / MTL-NAS / Aux-NAS authors' angle
    #: between the L2-normalised 0-255 encodings (n + 1) * 127.5 of prediction and label ("nddr_encoded")
    normal_angle: Literal["unit", "nddr_encoded"] = "unit"
    #: nyuv2_nddr's grey normal label pixels, such as (127, 127, 127), which encode no direction: invalid
    #: ("invalid"), or labels in the loss and the metrics, as NDDR-CNN / MTL-NAS / AdaShare / the Aux-NAS authors
    #: count them ("score"; with normal_angle: nddr_encoded, their numbers)
    nddr_grey_normals: Literal["invalid", "score"] = "invalid"
    #: segmentation mIoU over the classes present in the evaluation set ("present"), or over all classes with
    #: absent ones counting 0 ("all", the Aux-NAS authors' code)
    miou_classes: Literal["present", "all"] = "present"
    #: align_corners of the bilinear resize of a dense prediction to its label's size (loss and metrics) and of a
    #: dense head's output to the image size (false; LibMTL and the Aux-NAS authors: true)
    align_corners: bool = False

    @property
    def all(self) -> list[str]:
        return [self.primary, *self.aux]

    def task_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments of ``auxnas.tasks.build_task`` for task ``name``: its loss and the conventions."""
        return {"loss": self.losses.get(name), "normal_angle": self.normal_angle, "miou_classes": self.miou_classes,
                "align_corners": self.align_corners, "nddr_grey_normals": self.nddr_grey_normals}


@dataclass
class ModelConfig:
    """Backbone of every branch."""

    backbone: str = "tiny_resnet"
    #: local weights file for the backbone, "hub" for timm hub weights (needs network), or "packaged" for the
    #: ImageNet weights installed with auxnas (efficientnet_lite0)
    pretrained: str | None = None
    dilated: bool = False


@dataclass
class InitConfig:
    """Start branches from trained single-task runs (as the authors do), instead of backbone weights only."""

    #: run directory or checkpoint of a ``single`` run on the primary task
    primary: str | None = None
    #: auxiliary task -> run directory or checkpoint of a ``single`` run on that task
    aux: dict[str, str] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """How primary and auxiliary tasks are combined (see docs/methods.md)."""

    name: Literal["single", "aux_head", "aux_module", "adashare", "adashare_aux", "aux_g", "aux_nas"] = "single"
    #: where links may go: "layer" (every cell, within ``window``) or "stage" (last cell of each stage)
    granularity: Literal["layer", "stage"] = "layer"
    #: a link j -> i needs j <= i, i - j < window and both cells in one stage (authors: 3)
    window: int = 3
    #: aux_nas: search links in both directions, or p2a only (the paper's "gradient + NAS" ablation)
    search: Literal["both", "p2a_only"] = "both"
    #: fusion op after the residual sum: nothing (authors' ViT code) or BatchNorm + ReLU (paper's CNN form;
    #: feature maps only, and it does not start from the single-task networks: docs/methods.md)
    fusion_norm: Literal["none", "bn_relu"] = "none"
    #: aux_g, aux_nas: the fusion ops' initial weight on the other branch's features, spread over the links into a
    #: cell as identity blocks (authors' code: NDDR init, 0 as in the paper: fused branches start as single-task
    #: ones and no auxiliary gradient reaches the primary branch until the weights grow; docs/methods.md)
    fusion_init: float = 0.0
    #: initial strengths sigmoid(logit) of searched links (authors' code: p2a 0.5, a2p 0.001)
    p2a_init: float = 0.5
    a2p_init: float = 0.001
    #: "bilevel": alternating architecture / network steps on two disjoint halves of the training set,
    #: re-split each epoch (authors); "single_level": both updated on the same batch
    optimization: Literal["bilevel", "single_level"] = "bilevel"
    #: bilevel: one architecture step every this many network steps (1: every step, as the paper)
    arch_every: int = 1
    #: architecture optimiser (authors' ViT code: Adam, lr 1e-2, default betas, no weight decay, following the
    #: network's schedule; MTL-NAS's CNN protocol: Adam, constant lr, betas (0.5, 0.999), weight decay 1e-3)
    arch_optimizer: Literal["adam", "sgd"] = "adam"
    arch_lr: float = 0.01
    arch_weight_decay: float = 0.0
    #: Adam betas of the architecture optimiser
    arch_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: architecture learning rate: "follow" the network's schedule (authors' code) or stay "constant"
    arch_schedule: Literal["follow", "constant"] = "follow"
    #: L1 penalty on a2p strengths: weight 0 until penalty_start, linear to penalty_max at penalty_end
    #: (fractions of training), then constant; reduced by mean over links (authors' code) or sum (paper)
    penalty_max: float = 1000.0
    penalty_start: float = 0.5
    penalty_end: float = 0.8
    penalty_reduction: Literal["mean", "sum"] = "mean"
    #: aux_module: factor on the auxiliary module's (task-weighted) loss
    module_weight: float = 1.0
    #: adashare, adashare_aux: weights of the sparsity (sum log p_exec) and sharing (|p_exec(a) - p_exec(b)|) terms
    sparsity_weight: float = 0.05
    sharing_weight: float = 0.05
    #: adashare, adashare_aux: Gumbel-softmax temperature, geometric from start to end over training
    temperature_start: float = 5.0
    temperature_end: float = 0.5
    #: adashare, adashare_aux: learn the last cells' policies first; every policy from curriculum_end of training on
    curriculum: bool = True
    curriculum_end: float = 0.5
    #: adashare, adashare_aux: initial probability of executing a skippable cell
    policy_init: float = 0.5
    #: adashare, adashare_aux: training decisions: straight-through 0/1 Gumbel samples ("hard", the paper) or relaxed
    #: samples mixing cell and skip path ("soft", released code); evaluation takes the argmax either way
    adashare_sampling: Literal["hard", "soft"] = "hard"
    #: adashare, adashare_aux: ResNet blocks with a shortcut (downsample) are skippable too, through that shortcut
    #: (released code); false: only shape-preserving cells are
    adashare_skip_downsample: bool = False
    #: adashare, adashare_aux: sparsity term: sum log p_exec ("log", the paper; unbounded below) or the mean of
    #: -log(1 - p_exec) over learnable cells ("bounded": cross-entropy towards "skip", released code; >= 0)
    adashare_sparsity: Literal["log", "bounded"] = "log"


@dataclass
class WeightingConfig:
    """Loss weighting / gradient method applied in the network step (see docs/weighting.md)."""

    name: str = "equal"
    #: the method's hyper-parameters, e.g. {temperature: 2.0} for dwa
    options: dict[str, float | bool | str] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation of the network weights."""

    epochs: int = 10
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    #: SGD momentum (ignored by Adam)
    momentum: float = 0.9
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_power: float = 0.9
    #: "auto" picks CUDA when available
    device: str = "auto"
    #: bfloat16 autocast on CUDA (never on CPU)
    amp: bool = True
    #: stop each epoch after this many steps (smoke runs); None = full epochs
    max_steps_per_epoch: int | None = None
    #: TensorBoard scalars in RUN_DIR/tensorboard (losses, task weights, metrics, architecture weights,
    #: regulariser, learning rates), beside the JSON files
    tensorboard: bool = True
    #: every this many network steps (0: never), measure each task's weighted-loss gradient on the parameters every
    #: task's loss reaches (``shared_parameters``) and its cosine with the primary's; with a2p links, also evaluate
    #: the validation split with them kept each epoch. Recorded per epoch in the history; changes no weight
    diagnose_every: int = 0


@dataclass
class ExperimentConfig:
    """One training run."""

    name: str = "experiment"
    seed: int = 0
    #: run directory: checkpoints, metrics.json, the resolved config
    out_dir: str = "runs/experiment"
    data: DataConfig = field(default_factory=DataConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping to {_type_name(typing.get_args(tp)[1])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", type(None): "null"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (ints accepted as floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            key_tp, val_tp = typing.get_args(tp)
            return {_convert(k, key_tp, where): _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; valid keys{' of ' + where if where else ''}: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _check(cfg: ExperimentConfig) -> None:
    """Cross-field checks that types alone cannot express and that need no component (``auxnas.validate`` checks
    the sections against the tasks, dataset readers, backbones and weighting methods)."""
    _check_numbers(cfg)
    positive = {
        "data.image_size": cfg.data.image_size,
        "data.num_train": cfg.data.num_train,
        "data.num_test": cfg.data.num_test,
        "data.batch_size": cfg.data.batch_size,
        "train.epochs": cfg.train.epochs,
        "train.lr": cfg.train.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if cfg.data.batch_size_per_device is not None and cfg.data.batch_size_per_device <= 0:
        raise ConfigError(f"data.batch_size_per_device: must be positive or null, got {cfg.data.batch_size_per_device}")
    if cfg.train.diagnose_every < 0:
        raise ConfigError(f"train.diagnose_every: must be non-negative (0: off), got {cfg.train.diagnose_every}")
    if cfg.train.max_steps_per_epoch is not None and cfg.train.max_steps_per_epoch <= 0:
        raise ConfigError(f"train.max_steps_per_epoch: must be positive or null, got {cfg.train.max_steps_per_epoch}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be between 0 and 1 (exclusive), got {cfg.data.val_fraction}")
    for name, fraction in cfg.data.labelled_fraction.items():
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"data.labelled_fraction.{name}: a fraction in [0, 1], got {fraction}")
    if cfg.data.labelled_fraction.get(cfg.tasks.primary, 1.0) == 0.0:
        raise ConfigError(f"data.labelled_fraction.{cfg.tasks.primary}: the primary task needs some labelled images")
    if cfg.tasks.primary in cfg.data.random_targets:
        raise ConfigError(f"data.random_targets: the primary task {cfg.tasks.primary!r} must keep its real targets")
    share = cfg.data.oversample_primary
    if share is not None and not 0.0 < share < 1.0:
        raise ConfigError(f"data.oversample_primary: a share strictly between 0 and 1, or null; got {share}")
    if cfg.tasks.primary in cfg.tasks.aux:
        raise ConfigError(f"tasks.aux: the primary task {cfg.tasks.primary!r} cannot also be auxiliary")
    if len(set(cfg.tasks.aux)) != len(cfg.tasks.aux):
        raise ConfigError(f"tasks.aux: repeated task in {cfg.tasks.aux}")
    if cfg.tasks.nddr_grey_normals == "score" and cfg.data.name != "nyuv2_nddr":
        raise ConfigError(f"tasks.nddr_grey_normals: score counts the grey normal pixels of data.name=nyuv2_nddr; "
                          f"{cfg.data.name} has none (leave it at invalid)")
    for name, weight in cfg.tasks.loss_weights.items():
        if weight < 0:
            raise ConfigError(f"tasks.loss_weights.{name}: must be non-negative, got {weight}")
    for name in cfg.init.aux:
        if name not in cfg.tasks.aux:
            raise ConfigError(f"init.aux.{name}: not an auxiliary task of this run {cfg.tasks.aux}")
    m = cfg.method
    if m.name in ("aux_head", "aux_module", "adashare_aux", "aux_g", "aux_nas") and not cfg.tasks.aux:
        raise ConfigError(f"tasks.aux: method {m.name} needs at least one auxiliary task")
    if m.name == "single" and cfg.tasks.aux:
        raise ConfigError(f"tasks.aux: {cfg.tasks.aux} given, but single-task training uses no auxiliary task; remove "
                          "tasks.aux or choose a method (method.name: aux_head, aux_nas, ...)")
    if m.module_weight < 0 or m.sparsity_weight < 0 or m.sharing_weight < 0:
        raise ConfigError("method.module_weight, method.sparsity_weight and method.sharing_weight must be non-negative")
    if m.temperature_start <= 0 or m.temperature_end <= 0:
        raise ConfigError("method.temperature_start and method.temperature_end must be positive")
    if not 0.0 < m.curriculum_end <= 1.0:
        raise ConfigError(f"method.curriculum_end: must be in (0, 1], got {m.curriculum_end}")
    if not 0.0 < m.policy_init < 1.0:
        raise ConfigError(f"method.policy_init: a probability strictly between 0 and 1, got {m.policy_init}")
    if m.window < 1:
        raise ConfigError(f"method.window: must be >= 1, got {m.window}")
    if not 0.0 <= m.fusion_init <= 1.0:
        raise ConfigError(f"method.fusion_init: a weight in [0, 1], got {m.fusion_init}")
    for key in ("p2a_init", "a2p_init"):
        if not 0.0 < getattr(m, key) < 1.0:
            raise ConfigError(f"method.{key}: a strength strictly between 0 and 1, got {getattr(m, key)}")
    if m.arch_every < 1:
        raise ConfigError(f"method.arch_every: must be >= 1, got {m.arch_every}")
    if m.arch_every > 1 and m.optimization != "bilevel":
        raise ConfigError("method.arch_every: only bilevel optimisation has separate architecture steps")
    if len(m.arch_betas) != 2 or not all(0.0 <= b < 1.0 for b in m.arch_betas):
        raise ConfigError(f"method.arch_betas: two numbers in [0, 1), got {m.arch_betas}")
    if not 0.0 <= m.penalty_start <= m.penalty_end <= 1.0:
        raise ConfigError(f"method.penalty_start/penalty_end: need 0 <= start <= end <= 1, got "
                          f"{m.penalty_start}, {m.penalty_end}")
    if cfg.train.device not in ("auto", "cpu") and not cfg.train.device.startswith("cuda"):
        raise ConfigError(f"train.device: expected auto, cpu or cuda[:N], got {cfg.train.device!r}")
    if cfg.data.name != "synthetic" and cfg.data.root is None:
        raise ConfigError(f"data.root: data.name={cfg.data.name} needs the dataset folder (see docs/datasets.md)")
    if cfg.data.name == "synthetic" and cfg.data.image_size < 16:
        raise ConfigError(f"data.image_size: the synthetic scenes need at least 16 px, got {cfg.data.image_size}")


def _numbers(value: Any, key: str) -> typing.Iterator[tuple[str, float]]:
    """Every float of a config (dataclass, list, mapping) with its key, e.g. ``("tasks.loss_weights.seg", 2.0)``."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _numbers(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{key}[{i}]")
    elif isinstance(value, float):
        yield key, value


def _check_numbers(cfg: ExperimentConfig) -> None:
    """Every number finite; seeds, learning rates, weight decays and the poly power in range."""
    for key, value in _numbers(cfg, ""):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
    for key, value in (("seed", cfg.seed), ("data.seed", cfg.data.seed), ("train.weight_decay", cfg.train.weight_decay),
                       ("method.arch_weight_decay", cfg.method.arch_weight_decay),
                       ("method.penalty_max", cfg.method.penalty_max)):
        if value < 0:
            raise ConfigError(f"{key}: must be non-negative, got {value}")
    for key, value in (("train.poly_power", cfg.train.poly_power), ("method.arch_lr", cfg.method.arch_lr)):
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")


def config_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a nested dict into an :class:`ExperimentConfig`; errors name ``source`` and the key."""
    try:
        cfg = _build(ExperimentConfig, data, "")
        _check(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-3 as a string; numbers written that way are meant as floats
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.sub=value`` override set."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a packaged config such as ``quickstart``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml", ".yml") and not path.is_absolute() and ".." not in path.parts:
        packaged = PACKAGED_CONFIGS / path.with_suffix(".yaml")
        if packaged.is_file():
            return packaged
    available = ", ".join(sorted(str(p.relative_to(PACKAGED_CONFIGS).with_suffix(""))
                                 for p in PACKAGED_CONFIGS.rglob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such file, and not a packaged config (packaged: {available})")


def read_config_file(path: Path) -> Any:
    """The YAML content of ``path``; a file that is not UTF-8 YAML text is a one-line ``ConfigError`` naming it."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: byte 0x{raw[err.start]:02x} at position "
                          f"{err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return data


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (or packaged config name), apply overrides, validate."""
    path = resolve_config_path(name_or_path)
    data = read_config_file(path)
    if data is None:
        raise ConfigError(f"{path}: empty config file (no key set); write the keys to change, e.g. out_dir: runs/x, "
                          "or start from a packaged config such as quickstart")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides), source=str(path))
