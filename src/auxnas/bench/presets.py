"""What the accuracy benchmark runs: its settings, rows and presets (plain data, no torch, so that the command line
can list them at once)."""

from __future__ import annotations

from dataclasses import dataclass

from ..compare.rows import AUX, CEILING, RUN

#: the packaged folder of the settings' configs: setting ``x`` is ``configs/bench/x.yaml`` (``auxnas compare bench/x``)
SETTINGS_FOLDER = "bench"


def setting_config(name: str) -> str:
    """The packaged config of setting ``name`` (a name ``load_config`` and ``auxnas compare`` take)."""
    return f"{SETTINGS_FOLDER}/{name}"


# Why Aux-NAS does not transfer where hard sharing does (docs/research/why_no_transfer.md): variants the paper's
# framework allows, each changing one thing. Single-level: every image's labels reach the network step (bilevel
# spends half of them on architecture steps). Paper init: every link starts at 0.5 (the paper's text; the released
# code starts a2p at 0.001), with a constant architecture lr so that the penalty can prune them. Fusion init: the
# fusion ops start as identity blocks, so auxiliary gradients reach the primary branch from the first step.
#: the investigation's weight decay on the a2p projections (``method.a2p_weight_decay``)
A2P_WEIGHT_DECAY = 0.00025
#: (label, overrides) of the investigation's rows, in none of the presets' tables
INVESTIGATION_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aux_nas-single_level", ("method.name=aux_nas", "method.optimization=single_level")),
    ("aux_nas-paper_init", ("method.name=aux_nas", "method.a2p_init=0.5", "method.arch_schedule=constant")),
    # the same, with a2p cut early (penalty over 10-40 % of training): 60 % of the updates to keep what it borrowed
    ("aux_nas-early_cut", ("method.name=aux_nas", "method.a2p_init=0.5", "method.arch_schedule=constant",
                           "method.penalty_start=0.1", "method.penalty_end=0.4")),
    ("aux_nas-fusion_init", ("method.name=aux_nas", "method.fusion_init=0.5")),
    ("aux_g-fusion_init", ("method.name=aux_g", "method.granularity=layer", "method.fusion_init=0.5")),
    # weight decay on the a2p projections (the MTL-NAS protocol's 2.5e-4, on them alone): the L1 penalty then
    # prunes the link, not only its strength (docs/research/why_no_transfer.md, item 9)
    ("aux_nas-a2p_wd", ("method.name=aux_nas", f"method.a2p_weight_decay={A2P_WEIGHT_DECAY}")),
    # an architecture step every second network step (issue 32: the default if its share of the gap is not lower
    # beyond noise; the search iteration then costs about 1.4-1.5x two single-task steps instead of 1.8-1.9x)
    ("aux_nas-arch_every_2", ("method.name=aux_nas", "method.arch_every=2")),
)

#: single-task on the auxiliary task: the auxiliary branch of the authors' recipe, run for it, in no table
AUX_SINGLE = "single-aux"

#: the authors' recipe: Aux-NAS with its primary branch from the seed's single run, its auxiliary one from single-aux
RECIPE = ("method.name=aux_nas", f"init.primary={RUN % 'single'}", f"init.aux={{{AUX}: {RUN % AUX_SINGLE}}}")

#: the schema's defaults of every key the paper's CNN protocol (``@paper_cnn``) sets, and the benchmark settings'
#: Adam learning rate and architecture cadence: after the protocol, these give back the settings' default Aux-NAS
#: (the authors' ViT protocol)
PROTOCOL_RESET = (
    "method.arch_every=1", "method.fusion_norm=none", "method.fusion_lr_factor=1.0", "method.p2a_init=0.5",
    "method.a2p_init=0.001",
    "method.penalty_reduction=mean", "method.penalty_max=1000.0", "method.penalty_start=0.5", "method.penalty_end=0.8",
    "method.arch_optimizer=adam", "method.arch_lr=0.01", "method.arch_betas=[0.9, 0.999]",
    "method.arch_weight_decay=0.0", "method.arch_schedule=follow", "train.optimizer=adam", "train.momentum=0.9",
    "train.weight_decay=0.0", "train.schedule=poly", "train.poly_power=0.9", "train.lr=0.002",
    "tasks.loss_weights.disparity=15.0",
)
#: the protocol experiment's auxiliary loss weight for disparity: under SGD the settings' 15 (chosen for Adam's loss
#: scales) killed Aux-Head's disparity head after one epoch (its gradient 0 in every later diagnostic; pilot), so by
#: the rule fixed before the runs it becomes 1; normals' 4 stayed alive (docs/protocols.md)
PROTOCOL_LOSS_WEIGHTS = ("tasks.loss_weights.disparity=1.0",)

#: rows whose fair baseline is another row than single-task (same updates of the primary branch)
BASELINES = {"aux_nas-recipe": "single-continued", "aux_nas-recipe-a2p_wd": "single-continued"}

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
    # the meta-learned weighting (Auto-Lambda, the reference's defaults): the primary's loss one step ahead decides
    ("aux_head+auto_lambda", ("method.name=aux_head", "weighting.name=auto_lambda")),
    ("aux_nas+auto_lambda", ("method.name=aux_nas", "weighting.name=auto_lambda")),
    # the other meta-learned weighting (AuxiLearn, linear, the reference's defaults): a held-out auxiliary set decides
    ("aux_head+auxilearn", ("method.name=aux_head", "weighting.name=auxilearn")),
    *INVESTIGATION_ROWS,
    # the authors' recipe: both branches start from the seed's single-task runs and train as many updates again;
    # its fair control is single-task continued from its own run for as many updates (the primary branch's total)
    (AUX_SINGLE, ("method.name=single", f"tasks.primary={AUX}", "tasks.aux=[]")),
    ("single-continued", ("method.name=single", "tasks.aux=[]", f"init.primary={RUN % 'single'}")),
    ("aux_nas-recipe", RECIPE),
    # the same with the investigation's weight decay on the a2p projections (in no preset's table)
    ("aux_nas-recipe-a2p_wd", (*RECIPE, f"method.a2p_weight_decay={A2P_WEIGHT_DECAY}")),
    # today's default Aux-NAS in a runs folder whose every other row trains under the paper's CNN protocol: the
    # same-machine reference of the protocol experiment (docs/protocols.md)
    ("aux_nas-default", ("method.name=aux_nas", *PROTOCOL_RESET)),
    # the protocol experiment's follow-up: protocol Aux-NAS at the default's disparity weight, to separate the
    # protocol from the weight cut it came with (docs/protocols.md)
    ("aux_nas-disparity_15", ("method.name=aux_nas", "tasks.loss_weights.disparity=15.0")),
    ("aux_nas-random_aux", ("method.name=aux_nas", f"data.random_targets=[{AUX}]")),
    ("aux_head-random_aux", ("method.name=aux_head", f"data.random_targets=[{AUX}]")),
)

#: rows in no preset's table: the investigation's and the recipe's auxiliary branch
UNTABLED = {*(r[0] for r in INVESTIGATION_ROWS), AUX_SINGLE, "aux_nas-recipe-a2p_wd", "aux_nas-default",
             "aux_nas-disparity_15"}

#: (name, description) of every setting, the positive controls first; each is a packaged config
#: (``setting_config``: tiny_resnet at 32 px, 96 network updates, the loss weights and how they were chosen)
SETTINGS: tuple[tuple[str, str], ...] = (
    ("ctrl-depth", "control: depth primary on 10 % of the larger set, disparity (= 1 / depth) auxiliary on all"),
    ("ctrl-layout", "control: seg primary on 10 % of the larger set, layout (seg in 4 classes) auxiliary on all"),
    ("a-small", "(a) seg primary, normal auxiliary, small"),
    ("a-large", "(a) seg primary, normal auxiliary, larger"),
    ("b-small", "(b) normal primary, seg auxiliary, small"),
    ("b-large", "(b) normal primary, seg auxiliary, larger"),
    ("c-small", "(c) scene primary, seg auxiliary, small"),
    ("c-large", "(c) scene primary, seg auxiliary, larger"),
    ("d-10", "(d) seg primary on 10 % of the larger set, normal auxiliary on all"),
    ("d-30", "(d) seg primary on 30 % of the larger set, normal auxiliary on all"),
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
                   tuple(r[0] for r in ROWS if r[0] not in UNTABLED), (0, 1, 2, 3, 4)),
    # issue 15's rerun at a budget the controls passed (--set ... --tag): the controls and settings (a), (b), (d) on
    # the larger set (32 batches an epoch, as the controls), the central rows and the authors' recipe, 5 seeds
    "central": Preset(
        (*CONTROLS, "a-large", "b-large", "d-10"),
        ("aux_head", "aux_g-layer", "aux_nas", "aux_nas-p2a_only", "aux_nas-random_aux", "aux_head-random_aux",
         "single-continued", "aux_nas-recipe", "aux_head+auto_lambda", "aux_nas+auto_lambda", "aux_head+auxilearn"),
        (0, 1, 2, 3, 4),
    ),
    # the positive controls alone, 3 seeds: to size the budget (--set train.epochs=...) until they pass
    "controls": Preset(CONTROLS, ("aux_head", "aux_nas", "aux_nas-random_aux", "aux_head-random_aux"), (0, 1, 2)),
    # issue 32's experiment (docs/protocols.md): every row under the paper's CNN protocol, beside today's default
    # Aux-NAS retrained in the same folder; the backbone and its SGD lr come with --set and --tag
    "protocol": Preset(("ctrl-depth", "d-10"), ("aux_head", "aux_g-layer", "aux_nas", "aux_nas-default"),
                       (0, 1, 2, 3, 4), ("@paper_cnn", *PROTOCOL_LOSS_WEIGHTS)),
    # `auxnas demo`: the depth control at the demo's budget, then the setting where the full preset found the
    # clearest effect; the demo's rows, 5 seeds
    "demo": Preset(("ctrl-depth", "b-small"), ("aux_head", "aux_g-layer", "aux_nas", "aux_nas-random_aux"),
                   (0, 1, 2, 3, 4)),
}
