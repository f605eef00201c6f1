"""Data-parallel meta-training over ``torch.distributed``: the meta-batch of tasks split over
processes, every task mean all-reduced, every process taking the identical step.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT``),
a trainer joins the process group by itself (:meth:`DataParallel.from_environment`), so
``torchrun --nproc-per-node 2 examples/maml_nav.py`` needs no change to the script; a multi-node
rendezvous is torchrun's (``--nnodes``, ``--rdzv-endpoint``). The backend is gloo on CPU and
nccl on CUDA.

Why not ``DistributedDataParallel``: it synchronises gradients in the backward hooks of a
``nn.Module`` and supports neither double backward nor ``torch.func`` transforms, which the
meta-gradient needs. Here the meta-step all-reduces its own tensors instead
(``meta.TaskShard``): the meta-gradient, each surrogate and KL of the line search, and each
curvature product of conjugate gradient, weighted by how many of the averaged tasks each process
holds. Every process draws the whole meta-batch's tasks and noise from the same generator and
keeps its own tasks (every N-th), so N processes over the same tasks compute what one process does (up to
the order of floating-point sums).
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass
from typing import Any

import optree
import torch
import torch.distributed as dist

from .. import checks
from ..meta import TaskShard

__all__ = ["DataParallel"]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel group (``world_size`` 1: a single process, and
    every operation is the identity).

    Attributes:
        rank: this process's index in ``[0, world_size)``; rank 0 alone writes files.
        world_size: the number of processes.
    """

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls, device: torch.device, timeout_s: float = 300.0) -> DataParallel:
        """The group torchrun launched this process in (``WORLD_SIZE`` > 1), joined on first use;
        a single process otherwise. ``timeout_s``: how long a collective waits for the others
        before it fails, so a rank that died brings the job down instead of hanging it."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        checks.positive_number(timeout_s, "timeout_s")
        if not dist.is_initialized():
            # torch._dynamo (which the first torch.func transform imports) keeps a reference to a
            # process group that exists when it is imported: that group then outlives
            # destroy_process_group, and its gloo threads abort the process at exit (about one
            # run in three). Imported before the group, it holds none.
            import torch._dynamo  # noqa: F401

            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
            atexit.register(_leave_group)  # a process leaving with the group alive may abort
        return cls(dist.get_rank(), dist.get_world_size())

    def local_device(self, device: torch.device) -> torch.device:
        """``device``, with a bare ``cuda`` made this process's GPU (``cuda:LOCAL_RANK``, as
        torchrun numbers the processes of a host)."""
        if self.world_size == 1 or device.type != "cuda" or device.index is not None:
            return device
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        """Whether this process logs, plots and checkpoints (rank 0)."""
        return self.rank == 0

    def task_shard(self, num_tasks: int) -> TaskShard:
        """This process's tasks of a meta-batch of ``num_tasks``, which the processes must split
        evenly: every ``world_size``-th task from ``rank`` (interleaved, so that TRPO's curvature
        sample, the batch's first tasks, spreads over the processes), with the weighted
        all-reduce the meta-steps need."""
        checks.positive_int(num_tasks, "num_tasks")
        if num_tasks % self.world_size:
            raise ValueError(f"meta_batch_size: {num_tasks} tasks do not split evenly over {self.world_size} processes")
        return TaskShard(self.rank, self.world_size, num_tasks, self.task_mean)

    def task_mean(self, x: torch.Tensor, num_tasks: int) -> torch.Tensor:
        """``x``, a mean over ``num_tasks`` of this process's tasks, as the mean over every
        process's tasks: ``sum_r n_r x_r / sum_r n_r`` in one all-reduce. A collective."""
        if self.world_size == 1:
            return x
        flat = x.detach().reshape(-1)
        buffer = torch.cat([flat * num_tasks, flat.new_full((1,), float(num_tasks))])
        dist.all_reduce(buffer)
        return (buffer[:-1] / buffer[-1]).reshape(x.shape)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of ``x`` over the processes (a collective; ``x`` itself with one process)."""
        if self.world_size == 1:
            return x
        out = x.detach().clone()
        dist.all_reduce(out)
        return out

    def broadcast(self, tree: Any) -> Any:
        """``tree``'s tensors as rank 0 holds them, on every process (a collective)."""
        if self.world_size == 1:
            return tree
        leaves, spec = optree.tree_flatten(tree)
        out = []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                leaf = leaf.detach().clone()
                dist.broadcast(leaf, src=0)
            out.append(leaf)
        return optree.tree_unflatten(spec, out)


def _leave_group() -> None:
    """Destroy the process group this module joined, if the user has not (run at exit)."""
    if dist.is_initialized():
        dist.destroy_process_group()
