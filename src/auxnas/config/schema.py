"""The experiment configuration's schema: one dataclass per YAML section, and ``ConfigError``.

Every YAML key maps onto a dataclass field; ``auxnas.config`` reads YAML into these classes (with ``key=value``
overrides) and type-checks every value, ``auxnas.config.checks`` checks the fields against each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


def valid_device(name: str) -> bool:
    """Whether ``name`` is a device a run can name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the one rule; whether
    this machine has it is ``engine.runtime.resolve_device``'s question)."""
    index = name.removeprefix("cuda:")
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and index.isdigit())


@dataclass(frozen=True)
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
    #: DataLoader worker processes (0: load in the training process); the synthetic scenes' augmentation draws
    #: from each worker's generator, so another count trains on other draws (it is part of a run's identity)
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


@dataclass(frozen=True)
class TasksConfig:
    """Which task is primary, which are auxiliary, and their loss weights. A task is a built-in name (seg, normal,
    depth, disparity, object, scene, layout) or one its dataset declares by kind (docs/tasks.md)."""

    primary: str = "normal"
    aux: list[str] = field(default_factory=list)
    #: task name -> loss weight; tasks not listed weigh 1; weights of tasks the run does not train are unused
    loss_weights: dict[str, float] = field(default_factory=dict)
    #: task name -> its loss, e.g. {depth: ssi, disparity: mse, object: l2_soft}; tasks not listed use the loss
    #: their dataset declares, else their kind's default (docs/tasks.md lists every kind's losses, default first)
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


@dataclass(frozen=True)
class ModelConfig:
    """Backbone of every branch."""

    backbone: str = "tiny_resnet"
    #: local weights file for the backbone, "hub" for timm hub weights (needs network), or "packaged" for the
    #: ImageNet weights installed with auxnas (efficientnet_lite0)
    pretrained: str | None = None
    dilated: bool = False


@dataclass(frozen=True)
class InitConfig:
    """Start branches from trained single-task runs (as the authors do), instead of backbone weights only."""

    #: run directory or checkpoint of a ``single`` run on the primary task
    primary: str | None = None
    #: auxiliary task -> run directory or checkpoint of a ``single`` run on that task
    aux: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodConfig:
    """How primary and auxiliary tasks are combined (see docs/methods.md): the method and every method's options,
    flat (the form of YAML files, overrides and run identities). Which method takes which option, its module
    declares (``auxnas.methods.METHOD_OPTIONS``); a method ignores the others."""

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
    #: bilevel: one architecture step every this many network steps (1: every step, as the paper; 2 since issue 32:
    #: on both positive controls at 5 seeds it transfers no less, and a search iteration costs 1.4-1.5x the two
    #: single-task steps instead of 1.8-1.9x, docs/protocols.md). Single-level search steps the architecture with
    #: every network step and ignores it
    arch_every: int = 2
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
    #: aux_nas: weight decay on the a2p fusion ops' 1x1 projections, added to train.weight_decay for them. The L1
    #: penalty acts on the strengths only; without decay a projection can grow until a link pruned to 1e-3 still
    #: carries what the primary relies on (docs/research/why_no_transfer.md, item 9). 0: the authors' code
    a2p_weight_decay: float = 0.0
    #: aux_g, aux_nas: the fusion ops' 1x1 projections (p2a and a2p) train at this multiple of train.lr, under the
    #: same schedule (the MTL-NAS protocol behind the paper's CNN tables: 100; the authors' ViT code: 1). Methods
    #: without fusion ops have nothing it acts on
    fusion_lr_factor: float = 1.0
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


@dataclass(frozen=True)
class WeightingConfig:
    """Loss weighting / gradient method applied in the network step (see docs/weighting.md)."""

    name: str = "equal"
    #: the method's hyper-parameters, e.g. {temperature: 2.0} for dwa
    options: dict[str, float | bool | str] = field(default_factory=dict)


@dataclass(frozen=True)
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
    #: keep the model's 4-D weights (and so its convolutions' activations) channels-last, NHWC: the same
    #: computation, results apart by float rounding only; on CPU a network step of efficientnet_lite0 at 64 px runs
    #: 1.44x faster, tiny_resnet 1.3x, resnet18 and ViT alike (benchmarks/channels_last.py); CUDA not measured
    channels_last: bool = False
    #: stop each epoch after this many steps (smoke runs); None = full epochs
    max_steps_per_epoch: int | None = None
    #: TensorBoard scalars in RUN_DIR/tensorboard (losses, task weights, metrics, architecture weights,
    #: regulariser, learning rates), beside the JSON files
    tensorboard: bool = True
    #: every this many network steps (0: never), measure each task's weighted-loss gradient on the parameters every
    #: task's loss reaches (``shared_parameters``) and its cosine with the primary's; with a2p links, also evaluate
    #: the validation split with them kept each epoch. Recorded per epoch in the history; changes no weight
    diagnose_every: int = 0


@dataclass(frozen=True)
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
