"""What the accuracy benchmark runs: its settings, rows and presets (plain data, no torch, so that the command line
can list them at once)."""

from __future__ import annotations

from dataclasses import dataclass

from ..compare.rows import AUX, CEILING, RUN

#: the packaged config every run starts from; the overrides below set everything the benchmark depends on
BASE_CONFIG = "demo"

#: overrides shared by every setting: tiny_resnet at 32 px in batches of 16, the demo's optimiser, one dataset
#: (data.seed 0) for every seed, so that seeds vary initialisation, batch order and augmentation
COMMON_OVERRIDES = (
    "data.seed=0", "data.image_size=32", "data.num_test=200", "data.batch_size=16", "data.augment=true",
    "model.backbone=tiny_resnet", "train.optimizer=adam", "train.lr=0.002", "train.schedule=poly",
)


# Why Aux-NAS does not transfer where hard sharing does (docs/why_no_transfer.md): variants the paper's framework
# allows, each changing one thing. Single-level: every image's labels reach the network step (bilevel spends half of
# them on architecture steps). Paper init: every link starts at 0.5 (the paper's text; the released code starts a2p
# at 0.001), with a constant architecture lr so that the penalty can prune them. Fusion init: the fusion ops start
# as identity blocks, so auxiliary gradients reach the primary branch from the first step.
#: (label, overrides) of the investigation's rows, in none of the presets' tables
INVESTIGATION_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aux_nas-single_level", ("method.name=aux_nas", "method.optimization=single_level")),
    ("aux_nas-paper_init", ("method.name=aux_nas", "method.a2p_init=0.5", "method.arch_schedule=constant")),
    ("aux_nas-fusion_init", ("method.name=aux_nas", "method.fusion_init=0.5")),
    ("aux_g-fusion_init", ("method.name=aux_g", "method.granularity=layer", "method.fusion_init=0.5")),
)

#: single-task on the auxiliary task: the auxiliary branch of the authors' recipe, run for it, in no table
AUX_SINGLE = "single-aux"

#: rows whose fair baseline is another row than single-task (same updates of the primary branch)
BASELINES = {"aux_nas-recipe": "single-continued"}

#: (label, overrides) of every row; "single" is the baseline and is always run
ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("single", ("method.name=single", "tasks.aux=[]")),
    (CEILING, ("method.name=single", "tasks.aux=[]", "data.labelled_fraction={}")),
    ("aux_head", ("method.name=aux_head",)),
    ("aux_head+gcs", ("method.name=aux_head", "weighting.name=gcs")),
    ("aux_module", ("method.name=aux_module",)),
    # tiny_resnet has no shape-preserving block: without skipping through shortcuts nothing is skippable
    ("adashare_aux", ("method.name=adashare_aux", "method.adashare_skip_downsample=true")),
    # one block per stage in tiny_resnet: layer links (within a stage) are the stage links, the same model
    ("aux_g-stage", ("method.name=aux_g", "method.granularity=stage")),
    ("aux_g-layer", ("method.name=aux_g", "method.granularity=layer")),
    ("aux_nas-p2a_only", ("method.name=aux_nas", "method.search=p2a_only")),
    ("aux_nas", ("method.name=aux_nas",)),
    ("aux_nas+pcgrad_aux", ("method.name=aux_nas", "weighting.name=pcgrad_aux")),
    ("aux_nas+gcs", ("method.name=aux_nas", "weighting.name=gcs")),
    *INVESTIGATION_ROWS,
    # the authors' recipe: both branches start from the seed's single-task runs and train as many updates again;
    # its fair control is single-task continued from its own run for as many updates (the primary branch's total)
    (AUX_SINGLE, ("method.name=single", f"tasks.primary={AUX}", "tasks.aux=[]")),
    ("single-continued", ("method.name=single", "tasks.aux=[]", f"init.primary={RUN % 'single'}")),
    ("aux_nas-recipe", ("method.name=aux_nas", f"init.primary={RUN % 'single'}",
                        f"init.aux={{{AUX}: {RUN % AUX_SINGLE}}}")),
    ("aux_nas-random_aux", ("method.name=aux_nas", f"data.random_targets=[{AUX}]")),
    ("aux_head-random_aux", ("method.name=aux_head", f"data.random_targets=[{AUX}]")),
)


def _tasks(primary: str, aux: str, aux_weight: float) -> tuple[str, ...]:
    """Primary at weight 1, the auxiliary task at a weight that brings its loss to the primary's scale."""
    weights = f"tasks.loss_weights={{{primary}: 1.0, {aux}: {aux_weight}}}"
    return f"tasks.primary={primary}", f"tasks.aux=[{aux}]", weights


# Training-set sizes. The number of training images is num_train minus the validation images; each half of the
# training set is a whole number of batches, so a bilevel row's doubled epochs give exactly single-task's updates.
# Every setting makes 96 network updates (sized so that the full preset fits 2 h on 2 CPU cores).
#: 128 training images, 128 validation images, 12 epochs of 8 batches
SMALL = ("data.num_train=256", "data.val_fraction=0.5", "train.epochs=12")
#: 512 training images, 128 validation images, 3 epochs of 32 batches
LARGE = ("data.num_train=640", "data.val_fraction=0.2", "train.epochs=3")

# Loss weights from the unweighted training losses of single-task runs at these budgets: cross-entropy of seg
# ~1.5-1.8 and of scene ~1.3-1.5, normals' 1 - cos ~0.4 (4-5x smaller). Normals auxiliary to seg weigh 4, seg
# auxiliary to normals 0.25, seg auxiliary to scene 1.
# The controls' weights, from the final-epoch training losses of single-task runs at the LARGE budget (seeds 0, 1):
# depth's l1 1.68 / 2.35 on 10 % of the labels (1.35 / 2.14 on all), disparity's 0.125 / 0.138, 15x smaller:
# disparity auxiliary to depth weighs 15; seg's cross-entropy 1.49 on 10 % of the labels (the mean over d-10's runs
# in the full preset; 1.33 / 1.16 on all), layout's 0.78 / 0.68, 2x smaller: layout auxiliary to seg weighs 2.
#: (name, description, overrides) of every setting; the positive controls first
SETTINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ctrl-depth", "control: depth primary on 10 % of the larger set, disparity (= 1 / depth) auxiliary on all",
     (*_tasks("depth", "disparity", 15.0), *LARGE, "data.labelled_fraction={depth: 0.1}")),
    ("ctrl-layout", "control: seg primary on 10 % of the larger set, layout (seg in 4 classes) auxiliary on all",
     (*_tasks("seg", "layout", 2.0), *LARGE, "data.labelled_fraction={seg: 0.1}")),
    ("a-small", "(a) seg primary, normal auxiliary, small", (*_tasks("seg", "normal", 4.0), *SMALL)),
    ("a-large", "(a) seg primary, normal auxiliary, larger", (*_tasks("seg", "normal", 4.0), *LARGE)),
    ("b-small", "(b) normal primary, seg auxiliary, small", (*_tasks("normal", "seg", 0.25), *SMALL)),
    ("b-large", "(b) normal primary, seg auxiliary, larger", (*_tasks("normal", "seg", 0.25), *LARGE)),
    ("c-small", "(c) scene primary, seg auxiliary, small", (*_tasks("scene", "seg", 1.0), *SMALL)),
    ("c-large", "(c) scene primary, seg auxiliary, larger", (*_tasks("scene", "seg", 1.0), *LARGE)),
    ("d-10", "(d) seg primary on 10 % of the larger set, normal auxiliary on all",
     (*_tasks("seg", "normal", 4.0), *LARGE, "data.labelled_fraction={seg: 0.1}")),
    ("d-30", "(d) seg primary on 30 % of the larger set, normal auxiliary on all",
     (*_tasks("seg", "normal", 4.0), *LARGE, "data.labelled_fraction={seg: 0.3}")),
)

#: the positive controls: the auxiliary label carries what the primary lacks (disparity is 1 / depth; layout is a
#: coarsening of seg), on every image, while the primary has 10 % of its labels
CONTROLS = ("ctrl-depth", "ctrl-layout")
#: a control passes when this row's share of the gap is above 0 beyond its interval: hard sharing, the simplest way
#: to pass information from the auxiliary labels to the primary
CONTROL_ROW = "aux_head"


@dataclass(frozen=True)
class Preset:
    """Which settings, rows and seeds run, and overrides applied after the settings' (smoke: tiny data)."""

    settings: tuple[str, ...]
    rows: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        ("a-small",), ("single", "aux_nas"), (0, 1),
        # 16 training images in 2 batches of 8 (1 per half when bilevel), 4 validation images, 1 epoch
        ("data.num_train=20", "data.val_fraction=0.2", "data.num_test=8", "data.batch_size=8", "train.epochs=1"),
    ),
    # the claim's two central methods and their noise controls, with the positive controls, 5 seeds
    "quick": Preset(
        (*CONTROLS, "a-small", "d-10"), ("aux_head", "aux_nas", "aux_nas-random_aux", "aux_head-random_aux"),
        (0, 1, 2, 3, 4),
    ),
    # every setting and row but the investigation's, 5 seeds (2.4 h on 2 cores before the controls were added)
    "full": Preset(tuple(s[0] for s in SETTINGS),
                   tuple(r[0] for r in ROWS if r not in INVESTIGATION_ROWS and r[0] != AUX_SINGLE), (0, 1, 2, 3, 4)),
    # issue 15's rerun at a budget the controls passed (--set ... --tag): the controls and settings (a), (b), (d) on
    # the larger set (32 batches an epoch, as the controls), the central rows and the authors' recipe, 5 seeds
    "central": Preset(
        (*CONTROLS, "a-large", "b-large", "d-10"),
        ("aux_head", "aux_g-layer", "aux_nas", "aux_nas-p2a_only", "aux_nas-random_aux", "aux_head-random_aux",
         "single-continued", "aux_nas-recipe"),
        (0, 1, 2, 3, 4),
    ),
    # the positive controls alone, 3 seeds: to size the budget (--set train.epochs=...) until they pass
    "controls": Preset(CONTROLS, ("aux_head", "aux_nas", "aux_nas-random_aux", "aux_head-random_aux"), (0, 1, 2)),
    # `auxnas demo`: the depth control at the demo's budget, then the setting where the full preset found the
    # clearest effect; the demo's rows, 5 seeds
    "demo": Preset(("ctrl-depth", "b-small"), ("aux_head", "aux_g-layer", "aux_nas", "aux_nas-random_aux"),
                   (0, 1, 2, 3, 4)),
}
