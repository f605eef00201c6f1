"""Data-parallel MAML-TRPO on 2D navigation: seconds per meta-iteration at 1 and N processes,
the share of it spent in communication, and what is all-reduced per iteration.

    python benchmarks/distributed_scaling.py                  # 1 vs 2 gloo processes, the example's settings
    python benchmarks/distributed_scaling.py --iterations 10 --meta-batch-size 40 --processes 1 2

Each configuration runs in its own process group (``torch.multiprocessing``, gloo, one thread
per process), trains the default ``MAMLTrainer`` (seed 0) for ``--warmup`` untimed and
``--iterations`` timed meta-iterations, and reports the median seconds per iteration on rank
0, the median time inside ``DataParallel.task_mean`` / ``sum`` (the all-reduces), and the
all-reduce calls and bytes per iteration. The single-process row runs with one thread too, so
the comparison is of processes, not threads; a ``1 (2 threads)`` row shows what one process
makes of both cores. Communication on one machine is shared memory; across hosts it is the
network, where the bytes column decides whether it pays.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from functional_metarl.runners import DataParallel, MAMLConfig, MAMLTrainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Counted:
    """Wraps DataParallel's collectives to time them and count their calls and bytes."""

    def __init__(self, parallel: DataParallel):
        self.parallel, self.seconds, self.calls, self.bytes = parallel, 0.0, 0, 0

    def task_mean(self, x: torch.Tensor, n: int) -> torch.Tensor:
        start = time.perf_counter()
        out = self.parallel.task_mean(x, n)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.bytes += (x.numel() + 1) * x.element_size()
        return out


def _worker(rank: int, world_size: int, port: int, args: argparse.Namespace, out: str, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(threads)
    config = MAMLConfig(iterations=args.warmup + args.iterations, meta_batch_size=args.meta_batch_size, device="cpu")
    trainer = MAMLTrainer(config)
    counted = _Counted(trainer.parallel)
    if trainer.shard is not None:  # route the meta-step's reductions through the counter
        from functional_metarl.runners import make_meta_step

        trainer.shard = trainer.shard._replace(mean=counted.task_mean)
        trainer.meta_step = make_meta_step(config, trainer.policy, trainer.inner_opt, trainer.shard)
    for _ in range(args.warmup):
        trainer.train_iteration()
    seconds, comm, calls, volume = [], [], [], []
    for _ in range(args.iterations):
        counted.seconds, counted.calls, counted.bytes = 0.0, 0, 0
        start = time.perf_counter()
        trainer.train_iteration()
        seconds.append(time.perf_counter() - start)
        comm.append(counted.seconds)
        calls.append(counted.calls)
        volume.append(counted.bytes)
    if rank == 0:
        torch.save({"seconds": seconds, "comm": comm, "calls": calls, "bytes": volume}, out)
    if world_size > 1:
        torch.distributed.destroy_process_group()


def run(processes: int, threads: int, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per iteration, in communication, all-reduce calls and KiB per iteration."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        if processes == 1:
            os.environ.pop("WORLD_SIZE", None)
            _worker(0, 1, 0, args, out, threads)
        else:
            mp.spawn(_worker, args=(processes, _free_port(), args, out, threads), nprocs=processes, join=True)
        result = torch.load(out, weights_only=True)
    return {"seconds": statistics.median(result["seconds"]), "comm": statistics.median(result["comm"]),
            "calls": statistics.median(result["calls"]), "kib": statistics.median(result["bytes"]) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--meta-batch-size", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    for value, name in ((args.iterations, "--iterations"), (args.meta_batch_size, "--meta-batch-size")):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if args.warmup < 0 or any(p < 1 or args.meta_batch_size % p for p in args.processes):
        parser.error("--warmup must be >= 0 and every --processes value must divide --meta-batch-size")
    rows = [(f"{p}", run(p, 1, args)) for p in args.processes]
    if 1 in args.processes:
        rows.insert(1, ("1 (2 threads)", run(1, 2, args)))
    base = rows[0][1]["seconds"]
    print(f"MAML-TRPO, 2D navigation, meta-batch {args.meta_batch_size}, median of {args.iterations} iterations")
    print(f"{'processes':>14} | {'s / iteration':>13} | {'speed-up':>8} | {'in all-reduce':>13} | {'calls':>5} | {'KiB':>8}")
    for name, r in rows:
        print(f"{name:>14} | {r['seconds']:13.3f} | {base / r['seconds']:8.2f} | {r['comm']:12.3f}s | "
              f"{r['calls']:5.0f} | {r['kib']:8.1f}")


if __name__ == "__main__":
    main()
