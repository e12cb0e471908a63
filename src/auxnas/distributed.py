"""Data-parallel training over processes started by ``torchrun`` (docs/distributed.md).

``fit`` calls ``session`` once: started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` in the environment, ``WORLD_SIZE > 1``) it joins the process group
(NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``; gloo on CPU) and hands the loop a
``Distributed``; otherwise a one-process ``Distributed`` whose every method is a no-op, so the loop
is the same code either way.

How the steps use these collectives (a ``DistributedDataParallel`` wrapper for a loss weighting, each task's loss
share, what is averaged when) is ``auxnas.engine.parallel``'s, the one owner of data-parallel training. BatchNorm
layers compute their batch statistics over the global batch (``sync_batch_norm`` on CPU/gloo,
``nn.SyncBatchNorm`` on CUDA), so ``N`` processes train like one process on the same global batch.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import Tensor, nn
from torch.utils.data import Dataset

T = TypeVar("T")

#: elements per all-reduce bucket (64 MiB of float32)
BUCKET = 1 << 24
#: seconds a collective waits for the other processes before failing (``AUXNAS_COLLECTIVE_TIMEOUT`` overrides it)
COLLECTIVE_TIMEOUT = 1800


def collective_timeout() -> timedelta:
    """How long a collective waits for a stuck process before it fails: ``$AUXNAS_COLLECTIVE_TIMEOUT`` seconds,
    else ``COLLECTIVE_TIMEOUT``. A value that is not a positive number raises ``ValueError`` in one line."""
    raw = os.environ.get("AUXNAS_COLLECTIVE_TIMEOUT", str(COLLECTIVE_TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 1e9:
        raise ValueError(f"AUXNAS_COLLECTIVE_TIMEOUT={raw!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


def is_main() -> bool:
    """Whether this is the process that writes and prints (rank 0; also true outside ``torchrun``)."""
    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """The number of training processes: the process group's, or the number ``torchrun`` started (1 outside it)."""
    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Distributed:
    """This process's place among the training processes; a single process when ``world_size`` is 1.

    Collectives run on the process group (``torch.distributed``'s default group); in a single process every
    method returns at once (``average_`` leaves its tensors as they are, ``gather_on_main`` returns ``[obj]``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    def is_main(self) -> bool:
        """Whether this process writes files, logs and progress bars (rank 0)."""
        return self.rank == 0

    def sum_(self, tensors: Sequence[Tensor | None]) -> None:
        """Replace every tensor by its sum over the processes, in place (None entries are skipped)."""
        if self.enabled:
            _all_reduce_([t for t in tensors if t is not None], 1)

    def average_(self, tensors: Sequence[Tensor | None]) -> None:
        """Replace every tensor by its mean over the processes, in place (None entries are skipped). Every process
        must pass tensors of the same shapes in the same order."""
        if self.enabled:
            _all_reduce_([t for t in tensors if t is not None], self.world_size)

    def average_gradients(self, params: Sequence[Tensor]) -> None:
        """Average ``.grad`` of ``params`` over the processes, in place. A parameter without ``.grad`` on some
        processes counts as a zero gradient there; one without it on every process keeps ``None`` (the optimiser
        skips it, as it would in one process)."""
        if not self.enabled or not params:
            return
        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
        self.sum_([has])
        with_grad = [p for p, h in zip(params, has.tolist()) if h > 0]
        for p in with_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.average_([p.grad for p in with_grad])

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every process's ``module``."""
        if self.enabled:
            with torch.no_grad():
                for t in [*module.parameters(), *module.buffers()]:
                    tdist.broadcast(t.data, src=0)

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm's running statistics, ...) into every process's ``module``."""
        if self.enabled:
            with torch.no_grad():
                for t in module.buffers():
                    tdist.broadcast(t.data, src=0)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` (picklable), on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_on_main(self, obj: T) -> list[T] | None:
        """Every process's ``obj`` (picklable), in rank order, on rank 0; None on the others."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main() else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        """Wait until every process reaches this point."""
        if self.enabled:
            tdist.barrier()

    def on_main(self, action: Callable[[], None]) -> None:
        """Run ``action`` on rank 0 only; an exception it raises is raised on every process (so that none is left
        waiting for the others)."""
        error: BaseException | None = None
        if self.is_main():
            try:
                action()
            except Exception as err:  # noqa: BLE001 - handed to every process, re-raised below
                error = err
        if self.enabled:
            error = self.broadcast(_picklable(error))
        if error is not None:
            raise error

    @contextlib.contextmanager
    def node_first(self) -> Iterator[None]:
        """Each node's first process (``local_rank`` 0) runs the block first (e.g. to fill a node's data cache),
        then the others. If it fails there, the others run the block themselves (and meet the same error) instead
        of waiting forever."""
        if self.local_rank != 0:
            self.barrier()
        try:
            yield
        finally:
            if self.local_rank == 0:
                self.barrier()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Make ``model`` data-parallel: global-batch BatchNorm (``nn.SyncBatchNorm`` for a model on CUDA,
        ``sync_batch_norm`` otherwise), rank 0's initial weights everywhere."""
        if self.enabled:
            first = next(model.parameters(), None)
            if first is not None and first.is_cuda:
                model = cuda_sync_batch_norm(model)
            else:
                sync_batch_norm(model)
            self.broadcast_module(model)
        return model

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous part of ``items``; the parts of all processes differ in size by at most one
        and together are ``items`` in order."""
        base, extra = divmod(len(items), self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return list(items[start : start + base + (self.rank < extra)])


def _picklable(error: BaseException | None) -> BaseException | None:
    """``error`` if it survives pickling, else a RuntimeError with its message."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(error).__name__}: {error}")


def _all_reduce_(tensors: list[Tensor], divisor: int) -> None:
    """Sum ``tensors`` over the processes in place, in buckets of at most ``BUCKET`` elements per device and
    dtype, then divide them by ``divisor``."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        start = 0
        while start < len(group):
            end, size = start + 1, group[start].numel()
            while end < len(group) and size + group[end].numel() <= BUCKET:
                size += group[end].numel()
                end += 1
            bucket, start = group[start:end], end
            flat = torch.cat([b.reshape(-1) for b in bucket])
            tdist.all_reduce(flat)
            if divisor != 1:
                flat.div_(divisor)
            for b, part in zip(bucket, flat.split([b.numel() for b in bucket])):
                b.copy_(part.view_as(b))


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[tuple[Distributed, torch.device]]:
    """This process's ``Distributed`` and device (``device``, the configured one) for one training run.

    Outside ``torchrun`` (or with one process): ``Distributed()`` and ``device``. Under
    ``torchrun`` with several processes: joins the process group (unless the caller already did) and leaves
    it at the end, its collectives failing after ``collective_timeout()``; CUDA devices become ``cuda:LOCAL_RANK``
    (``auto``, ``cuda`` or ``cuda:N`` alike: one GPU per process), with the NCCL backend; ``cpu`` uses gloo.
    """
    initialized = tdist.is_available() and tdist.is_initialized()
    if world_size() <= 1:
        yield Distributed(), device
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} GPU(s); start "
                             "at most that many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not initialized:
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=collective_timeout(),
                                 device_id=device if device.type == "cuda" else None)
    try:
        yield Distributed(tdist.get_rank(), tdist.get_world_size(), local_rank), device
    finally:
        if not initialized:
            tdist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; its gradient is the sum of the processes' gradients (every process's output
    feeds every process's loss)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        tdist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone()
        tdist.all_reduce(out)
        return out


def global_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Training-mode batch norm of ``x`` with the statistics of the global batch (all processes' ``x``).

    Two passes, each one all-reduce (the sum, then the sum of squared deviations from the global mean), in
    float32 at least; differentiable through the all-reduces, so the gradient is that of the global batch's loss.
    Running statistics are updated as ``F.batch_norm`` does (unbiased variance), identically on every process.
    """
    dims = [0, *range(2, x.dim())]
    shape = [1, -1, *([1] * (x.dim() - 2))]
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    count = torch.tensor([x.numel() / max(x.shape[1], 1)], dtype=xf.dtype, device=x.device)
    totals = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
    n = totals[-1].detach()
    mean = totals[:-1] / n
    centred = xf - mean.view(shape)
    var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
    out = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * (n / (n - 1).clamp_min(1))
            bn.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return out.to(x.dtype)


class _GlobalBatchNorm:
    """Mixin: training-mode forward over the global batch when several processes train (see ``global_batch_norm``);
    evaluation, and a single process, use the layer's own forward."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        self._check_input_dim(x)  # type: ignore[attr-defined]
        return global_batch_norm(self, x)  # type: ignore[arg-type]


_SYNCED: dict[type, type] = {}
_PLAIN_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def sync_batch_norm(model: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm1d/2d/3d`` of ``model`` into its global-batch form, in place.

    The layer keeps its class's name in ``type().__mro__`` (``isinstance(m, nn.BatchNorm2d)`` still holds), its
    parameters, buffers and state-dict keys, so checkpoints are those of the plain model. Works on CPU (gloo)
    and CUDA (NCCL), unlike ``nn.SyncBatchNorm``, which refuses CPU tensors. Subclasses with a forward of their
    own (e.g. timm's ``BatchNormAct2d``) are left per-process, with a warning.
    """
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or isinstance(module, _GlobalBatchNorm):
            continue
        cls = type(module)
        if cls not in _PLAIN_BATCH_NORMS:
            warnings.warn(f"{name} ({cls.__name__}): not a plain BatchNorm; its statistics stay per process",
                          stacklevel=2)
            continue
        if cls not in _SYNCED:
            _SYNCED[cls] = type(f"Global{cls.__name__}", (_GlobalBatchNorm, cls), {})
        module.__class__ = _SYNCED[cls]
    return model


def cuda_sync_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm turned into ``nn.SyncBatchNorm`` (timm's ``BatchNormAct2d`` into timm's
    ``SyncBatchNormAct``; timm's converter handles both), for a model on CUDA (NCCL). The layers keep their
    parameters, buffers and state-dict keys. Untested here: the test machines have no GPU (docs/distributed.md)."""
    from timm.layers import convert_sync_batchnorm

    return convert_sync_batchnorm(model)


class SeededSamples(Dataset):
    """``dataset[draws[k]]`` at position ``k``, its random draws (augmentation) from torch's generator seeded by
    ``(seed, k)``: independent of which process loads it, and leaving the process's own generator as it was.

    Data-parallel training loads through it, so that the processes' shared random stream (the model's draws,
    e.g. AdaShare's Gumbel samples, identical on every process as one process would draw them) does not depend on
    how the images of a batch are split between them.
    """

    def __init__(self, dataset: Dataset, draws: Sequence[int], seed: int) -> None:
        self.dataset, self.draws, self.seed = dataset, list(draws), int(seed)

    def __len__(self) -> int:
        return len(self.draws)

    def __getitem__(self, k: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed((self.seed * 1_000_003 + k) % (2**63))
            return self.dataset[self.draws[k]]
