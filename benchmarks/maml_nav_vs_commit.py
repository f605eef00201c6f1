"""This checkout's MAML-TRPO meta-iteration against an earlier commit's, interleaved in one process.

    python benchmarks/maml_nav_vs_commit.py 862b27a                  # 30 timed iterations each
    python benchmarks/maml_nav_vs_commit.py 862b27a --iterations 60 --threads 1

On a shared machine the speed drifts by tens of percent over minutes, so two separate runs do not
compare. This script exports the other commit's ``functional_metarl`` package with ``git archive``
into a temporary folder under another name, builds the default ``MAMLTrainer`` (seed 0, the
example's settings) from both packages, and alternates their ``train_iteration`` calls (ABBA
order), so that any drift hits both alike. The two runs start from the same seed but may drift
apart numerically, which changes how far each line search backtracks: the mean line-search
fraction is printed beside the medians so that such a difference shows.

Either side may predate the meta-step redesign (issue 24: ``meta.maml_trpo_step`` and
``MAMLConfig.meta_iterations`` became ``meta.trpo`` and ``MAMLConfig.iterations``); the script
only uses what both APIs share (``MAMLConfig(device=...)``, ``MAMLTrainer(config)``,
``train_iteration()``'s metrics row) and prints which API each side has.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch
from _common import add_malloc_flag, apply_malloc

import functional_metarl

ROOT = Path(__file__).resolve().parents[1]


def import_commit_package(commit: str, into: Path):
    """``functional_metarl`` as of ``commit``, imported as module ``fm_<commit>``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "functional_metarl"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    name = f"fm_{commit.replace('~', '_').replace('^', '_')}"
    (into / "functional_metarl").rename(into / name)
    sys.path.insert(0, str(into))
    return importlib.import_module(name)


def api_name(package) -> str:
    """Which MAML-RL API ``package`` has: meta-steps as values (``meta.trpo``) or the older functions."""
    if hasattr(package.meta, "MetaStep"):
        return "meta-steps as values (meta.trpo)"
    if hasattr(package.meta, "maml_trpo_step"):
        return "meta.maml_trpo_step"
    return "unknown"


def build_trainer(package):
    """The default ``MAMLTrainer`` (seed 0, the example's settings) of ``package``, on the CPU."""
    return package.runners.MAMLTrainer(package.runners.MAMLConfig(device="cpu"))


def iteration_metrics(trainer) -> dict:
    """One ``train_iteration``'s metrics row (every version returns it; a version that returned
    nothing is read from its history)."""
    metrics = trainer.train_iteration()
    return metrics if metrics is not None else trainer.history[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit", help="the commit (or tag, branch) to compare this checkout with")
    parser.add_argument("--iterations", type=int, default=30, help="timed meta-iterations per version")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    add_malloc_flag(parser, " (both versions share the process, so this never favours one)")
    args = parser.parse_args()
    if args.iterations < 2 or args.warmup < 0:
        raise ValueError(f"need --iterations >= 2 and --warmup >= 0, got {args.iterations} and {args.warmup}")
    torch.set_num_threads(args.threads)
    apply_malloc(args.malloc)
    with tempfile.TemporaryDirectory() as tmp:
        other = import_commit_package(args.commit, Path(tmp))
        for name, package in ((args.commit, other), ("this checkout", functional_metarl)):
            print(f"{name}: {api_name(package)}")
        trainers = {args.commit: build_trainer(other), "this checkout": build_trainer(functional_metarl)}
        for trainer in trainers.values():
            for _ in range(args.warmup):
                iteration_metrics(trainer)
        seconds = {name: [] for name in trainers}
        fractions = {name: [] for name in trainers}
        names = list(trainers)
        for i in range(args.iterations):
            for name in names if i % 2 == 0 else names[::-1]:
                metrics = iteration_metrics(trainers[name])
                seconds[name].append(metrics["seconds"])
                fractions[name].append(metrics["step_fraction"])
    print(f"median over {args.iterations} interleaved meta-iterations each, {args.threads} threads, malloc {args.malloc}")
    for name in names:
        print(f"{name:>14}: {statistics.median(seconds[name]):.3f} s / meta-iteration, "
              f"mean line-search fraction {statistics.mean(fractions[name]):.2f}")
    ratio = statistics.median(seconds[names[1]]) / statistics.median(seconds[names[0]])
    print(f"this checkout / {args.commit}: {ratio:.2f}")


if __name__ == "__main__":
    main()
