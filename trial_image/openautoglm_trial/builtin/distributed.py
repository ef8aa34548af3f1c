"""How the ranks of a built-in task train together: Horovod, or torch.distributed (DDP).

The training loop (:mod:`.training`) and the checkpoints (:mod:`.checkpoint`) speak only to
:class:`Distributed`; the task setting ``distributed`` picks the implementation:

* ``horovod`` (the default under ``trial.launcher: horovod``): ``hvd.DistributedOptimizer`` averages
  the gradients, the Horovod rendezvous of :mod:`openautoglm_trial.rendezvous` joins the ranks.
* ``ddp`` (the default under torchrun): ``init_process_group()`` from the torchrun environment the
  engine sets (MASTER_ADDR/PORT, RANK, WORLD_SIZE), Gloo on CPU and NCCL when CUDA is visible, the
  model wrapped in ``DistributedDataParallel``; with ``zero: true`` the task's optimizer runs inside
  ``ZeroRedundancyOptimizer`` (ZeRO-1: each rank holds and updates the optimizer state of its share
  of the parameters, then broadcasts those parameters).

Either way every rank ends each step with the same averaged gradients and the same parameters, so
the loop's decisions (divergence, patience) and its metrics are identical on every rank.

Device: the rank's CUDA device when torch sees one (``LOCAL_RANK`` modulo the visible devices:
each rank is its own node, so it is device 0 of what ``CUDA_VISIBLE_DEVICES`` leaves it), else the
CPU; on CPU nothing is moved anywhere. The CUDA paths are written for GPUs but were not run on one.
"""

from __future__ import annotations

import abc
import datetime
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import contract
from ..environment import TrialSettings
from ..errors import SettingsError
from ..tasks.base import DISTRIBUTED_OF_LAUNCHER, distributed_problems

if TYPE_CHECKING:
    import torch

    from ..rendezvous import Early

log = logging.getLogger(__name__)

HOROVOD = "horovod"
DDP = "ddp"


def choose(settings: TrialSettings, task_settings: Mapping[str, Any]) -> str:
    """``horovod`` or ``ddp``: the task setting ``distributed``, else what the launcher gives.

    Raises:
        SettingsError: a bad ``distributed``/``zero``, or one the launcher's environment cannot
            serve (a multi-rank trial has only its own launcher's variables).
    """
    for name, message in distributed_problems(task_settings, settings.launcher):
        raise SettingsError(f"task setting {name!r}: {message}")
    given = DISTRIBUTED_OF_LAUNCHER[settings.launcher]
    kind = task_settings.get("distributed") or given
    # A lone worker needs no launcher's variables: either kind runs on its own.
    if kind != given and not settings.horovod.standalone:
        raise SettingsError(
            f"task setting 'distributed': {kind} needs trial.launcher "
            f"{'torchrun' if kind == DDP else 'horovod'}; this worker has the {settings.launcher} environment"
        )
    return kind


class Distributed(abc.ABC):
    """The collectives and wrappers the training loop needs, on one rank."""

    kind: str
    rank: int
    size: int
    device: torch.device

    @abc.abstractmethod
    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """(the model to train through, the optimizer to step), every rank starting from rank 0's
        parameters; ``model`` itself keeps the plain parameters (evaluation, checkpoints)."""

    @abc.abstractmethod
    def mean_async(self, value: torch.Tensor, name: str) -> Callable[[], float]:
        """Start averaging a scalar over the ranks; the returned call waits and gives the mean."""

    @abc.abstractmethod
    def sum(self, vector: torch.Tensor, name: str) -> torch.Tensor:
        """The element-wise sum over the ranks, on the CPU, identical on every rank."""

    @abc.abstractmethod
    def broadcast_object(self, value: Any, name: str) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""

    @abc.abstractmethod
    def finish_gradients(self, optimizer: Any) -> None:
        """Make the gradients the averaged ones before they are judged (the gradient norm)."""

    def step(self, optimizer: Any) -> None:
        """One optimizer step on the averaged gradients."""
        optimizer.step()

    def local_optimizer(self, optimizer: Any) -> Any:
        """The optimizer whose state this rank holds (the whole state, unless sharded)."""
        return optimizer

    def optimizer_state_bytes(self, optimizer: Any) -> int:
        """Bytes of the optimizer state tensors this rank holds (Adam: both moments and steps)."""
        import torch

        local = self.local_optimizer(optimizer)
        return sum(
            value.numel() * value.element_size()
            for state in local.state.values()
            for value in state.values()
            if isinstance(value, torch.Tensor)
        )

    def info(self, optimizer: Any) -> dict[str, Any]:
        """Facts for the termination message: how the ranks trained, what state each one held."""
        return {
            "distributed": self.kind,
            "device": str(self.device),
            "optimizer_state_bytes": self.optimizer_state_bytes(optimizer),
        }

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Leave the process group, where there is one to leave (after the final result)."""


def device_for(local_rank: int) -> torch.device:
    """The rank's CUDA device when torch sees one (``local_rank`` modulo their number), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


class HorovodDistributed(Distributed):
    """Horovod: ``hvd.DistributedOptimizer`` averages the gradients in the backward pass."""

    kind = HOROVOD

    def __init__(self, hvd: Any, local_rank: int = 0) -> None:
        """Wrap the initialised ``horovod.torch`` module.

        A Horovod built without GPU support cannot reduce CUDA tensors: the ranks then train on
        the CPU even where a GPU is visible (and say so).
        """
        import torch

        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        device = device_for(local_rank)
        if device.type == "cuda" and not hvd.cuda_built():
            log.warning("CUDA is visible but this Horovod was built without GPU support: training on the CPU")
            device = torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        hvd = self.hvd
        wrapped = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(wrapped, root_rank=0)
        return model, wrapped

    def mean_async(self, value: torch.Tensor, name: str) -> Callable[[], float]:
        handle = self.hvd.allreduce_async(value, name=name)
        return lambda: self.hvd.synchronize(handle).item()

    def sum(self, vector: torch.Tensor, name: str) -> torch.Tensor:
        return self.hvd.allreduce(vector, op=self.hvd.Sum, name=name).cpu()

    def broadcast_object(self, value: Any, name: str) -> Any:
        return self.hvd.broadcast_object(value, root_rank=0, name=name)

    def finish_gradients(self, optimizer: Any) -> None:
        # The allreduces started in backward(); wait for them here, so the step below skips it.
        optimizer.synchronize()

    def step(self, optimizer: Any) -> None:
        with optimizer.skip_synchronize():
            optimizer.step()

    def shutdown(self) -> None:
        # Horovod's background thread ends with the process; nothing waits on it.
        return


class TorchDistributed(Distributed):
    """torch.distributed: ``DistributedDataParallel``, and ``ZeroRedundancyOptimizer`` with zero."""

    kind = DDP

    def __init__(self, rank: int, size: int, local_rank: int, zero: bool, timeout: float) -> None:
        """Join the process group: from the torchrun environment (``env://``: MASTER_ADDR/PORT,
        RANK, WORLD_SIZE), or alone in a group of one when the worker is standalone.

        Args:
            rank, size, local_rank: this worker's placement, as the environment gives it.
            zero: shard the optimizer state (ZeRO-1).
            timeout: seconds to wait for the peers (and for any later collective).
        """
        import torch
        import torch.distributed as dist

        self.rank, self.size, self.zero = rank, size, zero
        self.device = device_for(local_rank)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # NCCL and broadcast_object_list use the current device
        wait = datetime.timedelta(seconds=timeout)
        if size == 1:
            # No launcher gave an address: a group of one needs no store anyone else can reach.
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=wait)
        else:
            dist.init_process_group(backend, init_method="env://", rank=rank, world_size=size, timeout=wait)
        self.dist = dist

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers here. No buffer broadcast at each
        # forward: the models' buffers are constants, and a collective in forward() would hang
        # evaluation, where the ranks see different numbers of batches (it runs on the plain
        # model anyway). (``forward_sync_buffers``: torch 2.13's name, CPU and CUDA pins alike.)
        ddp = DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None, forward_sync_buffers=False
        )
        if not self.zero:
            return ddp, optimizer
        from torch.distributed.optim import ZeroRedundancyOptimizer

        # The task built a plain optimizer: the same class, groups and settings, sharded. Its own
        # state is empty (it never stepped), so nothing is lost in the exchange. The groups carry
        # every setting; of the defaults only what the constructor takes (AdamW's defaults hold
        # Adam's decoupled_weight_decay, which AdamW() refuses as an argument).
        cls = type(optimizer)
        accepted = inspect.signature(cls).parameters
        defaults = {key: value for key, value in optimizer.defaults.items() if key in accepted}
        groups = [dict(group) for group in optimizer.param_groups]
        return ddp, ZeroRedundancyOptimizer(groups, optimizer_class=cls, **defaults)

    def mean_async(self, value: torch.Tensor, name: str) -> Callable[[], float]:
        total = value.detach().clone()
        work = self.dist.all_reduce(total, async_op=True)

        def wait() -> float:
            work.wait()
            return total.item() / self.size

        return wait

    def sum(self, vector: torch.Tensor, name: str) -> torch.Tensor:
        total = vector.to(self.device)
        self.dist.all_reduce(total)
        return total.cpu()

    def broadcast_object(self, value: Any, name: str) -> Any:
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def finish_gradients(self, optimizer: Any) -> None:
        # DDP's backward() returns only once its bucket allreduces are done: nothing to wait for.
        return

    def local_optimizer(self, optimizer: Any) -> Any:
        # ZeroRedundancyOptimizer keeps this rank's share in its inner optimizer, ``optim``.
        return optimizer.optim if self.zero else optimizer

    def info(self, optimizer: Any) -> dict[str, Any]:
        return {**super().info(optimizer), "zero": self.zero}

    def shutdown(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def join(
    kind: str, zero: bool, settings: TrialSettings, early: Early | None, bind_address: str | None = None
) -> Distributed:
    """Join the trial's ranks the ``kind`` way.

    Args:
        kind: ``horovod`` or ``ddp`` (see :func:`choose`).
        zero: shard the optimizer state (ddp only).
        settings: the trial settings (placement, timeout).
        early: what ``rendezvous.begin`` started (Horovod), or None.
        bind_address: where rank 0's Horovod rendezvous server binds.
    """
    placement = settings.horovod
    if kind == HOROVOD:
        from .. import rendezvous

        hvd = rendezvous.join(placement, bind_address, settings.rendezvous_timeout, early)
        return HorovodDistributed(hvd, placement.local_rank)
    distributed = TorchDistributed(
        placement.rank, placement.size, placement.local_rank, zero, settings.rendezvous_timeout
    )
    log.info(
        "joined torch.distributed (%s) as rank %d of %d%s",
        distributed.dist.get_backend(),
        distributed.rank,
        distributed.size,
        ", ZeRO-1" if zero else "",
    )
    return distributed


def joining(kind: str, settings: TrialSettings) -> str:
    """What the worker is doing while it joins, for the provisional termination message."""
    placement = settings.horovod
    if placement.standalone:
        return f"joining {'Horovod' if kind == HOROVOD else 'torch.distributed'}"
    if kind == HOROVOD:
        where = f"rendezvous {placement.rendezvous_addr}:{placement.rendezvous_port}"
        return f"joining Horovod ({where}, {placement.size} workers)"
    return (
        f"joining torch.distributed ({contract.MASTER_ADDR} {placement.rendezvous_addr}:"
        f"{placement.master_port}, {placement.size} workers)"
    )
