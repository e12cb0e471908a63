"""Parity of ``weighting.name=auto_lambda`` with the Auto-Lambda reference (``lorenmt/auto-lambda``).

On one tiny auxnas model (tiny_resnet, Aux-Head, normals primary, segmentation and depth auxiliary, 32 px), one
network batch and one meta batch, and the network optimiser of the reference's dense trainer (SGD lr 0.1, momentum
0.9, weight decay 1e-4) after a few steps (so that momentum buffers exist), one meta update is made twice from the
same state: by the reference's ``AutoLambda.unrolled_backward`` and its Adam (lr 1e-4) on deep copies, and by
auxnas's meta step (``auxnas.engine.steps.meta_step``). Compared: the meta-gradient of every task weight and the
weights after the update. The reference's code is imported from its repository at run time, never copied: its
``model_fit`` (its datasets' losses) is replaced by auxnas's task losses and its model by a wrapper returning the
predictions as its list; its ``utils`` needs scipy.

    git -C /work/.mirror/lorenmt+auto-lambda/repo archive HEAD auto_lambda.py utils.py | tar -x -C /tmp/autol
    python benchmarks/parity_auto_lambda.py --reference /tmp/autol --out benchmarks/results/parity-auto_lambda.json
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from parity_setup import reference_args, warmed_up
from torch import nn

from auxnas.engine.steps import meta_problem, meta_step
from auxnas.storage import write_json

OVERRIDES = [
    "data.image_size=32", "data.num_train=48", "data.num_test=8", "data.val_fraction=0.25", "data.batch_size=8",
    "data.augment=false", "tasks.primary=normal", "tasks.aux=[seg, depth]",
    "tasks.loss_weights={normal: 1.0, seg: 1.0, depth: 1.0}", "method.name=aux_head", "weighting.name=auto_lambda",
    "train.optimizer=sgd", "train.lr=0.1", "train.momentum=0.9", "train.weight_decay=0.0001",
]
#: network steps before the compared meta update (momentum buffers, a lr below the schedule's start)
WARMUP_STEPS = 3


class AsList(nn.Module):
    """The auxnas model as the reference's networks are: ``forward(x)`` -> the predictions in task order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        preds = self.model(x)
        return [preds[name] for name in self.model.tasks]


def reference_update(reference: type, run, batch: dict, meta: dict) -> tuple[list[float], list[float]]:
    """The reference's meta-gradient and weights after one update, on deep copies of the model and optimiser."""
    model = copy.deepcopy(run.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.load_state_dict(run.state.optimizer.state_dict())  # the same lr, momentum buffers and decay
    tasks = list(model.tasks)
    autol = reference(AsList(model), torch.device("cpu"), dict.fromkeys(tasks), {run.cfg.tasks.primary: None},
                      weight_init=0.1)

    def model_fit(pred: list[torch.Tensor], targets: dict) -> list[torch.Tensor]:
        return [model.tasks[name].batch_loss(p.float(), targets) for name, p in zip(tasks, pred)]

    autol.model_fit = model_fit
    meta_optimizer = torch.optim.Adam([autol.meta_weights], lr=1e-4)
    meta_optimizer.zero_grad()
    autol.unrolled_backward(batch["image"], batch, meta["image"], meta, optimizer.param_groups[0]["lr"], optimizer)
    grad = autol.meta_weights.grad.tolist()
    meta_optimizer.step()
    return grad, autol.meta_weights.detach().tolist()


def main() -> None:
    args = reference_args(__doc__, "auto_lambda.py and utils.py")
    from auto_lambda import AutoLambda  # the reference

    run, batch, meta = warmed_up([*OVERRIDES, "out_dir=/tmp/auxnas-parity-auto_lambda"],
                                                      WARMUP_STEPS)
    ref_grad, ref_weights = reference_update(AutoLambda, run, batch.data, meta.data)
    ours = run.state.weighting
    grads = ours.meta_gradient(meta_problem(run.state, batch, meta))  # changes nothing
    meta_step(run.state, batch, meta)
    tasks = list(run.model.tasks)
    our_grad = [float(grads[t]) for t in tasks]
    our_weights = ours.lambdas.tolist()
    result = {
        "reference": "lorenmt/auto-lambda auto_lambda.py (AutoLambda.unrolled_backward, Adam lr 1e-4)",
        "setting": OVERRIDES, "warmup_steps": WARMUP_STEPS, "lr": run.state.optimizer.param_groups[0]["lr"],
        "tasks": tasks, "meta_gradient": {"reference": ref_grad, "auxnas": our_grad},
        "weights_after": {"reference": ref_weights, "auxnas": our_weights},
        "max_rel_gradient_diff": max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(ref_grad, our_grad)),
        "max_weight_diff": max(abs(a - b) for a, b in zip(ref_weights, our_weights)),
        "torch": torch.__version__,
    }
    write_json(Path(args.out), result)
    print(result)


if __name__ == "__main__":
    main()
