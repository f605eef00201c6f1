"""The held-out returns of several ``examples/maml_nav.py`` runs, and their mean.

    python benchmarks/maml_nav_runs_table.py runs/seed0 runs/seed1 runs/seed2

Reads each run's ``metrics.json`` (``eval.best``: best params, ``eval.final``: latest params; runs
written before the runner base, with top-level ``eval`` / ``eval_final``, are read too) and
prints the mean return after 0..3 inner steps per run and the mean over the runs, with the
config fields in which the runs differ, so that a table row averaged over seeds can be checked
from the run directories alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

STEPS = ("0", "1", "2", "3")
KINDS = (("best", "best"), ("latest", "final"))


def load_run(directory: Path) -> dict:
    """``{"config", "best", "final"}`` of one run's ``metrics.json``; a clear error when it is
    missing or has no evaluation. Reads ``{"eval": {"best", "final"}}`` (the runner base's
    format) and the older ``{"eval", "eval_final"}``."""
    path = directory / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: expected an examples/maml_nav.py output directory")
    metrics = json.loads(path.read_text())
    evaluation = metrics.get("eval")
    if isinstance(evaluation, dict) and "best" in evaluation:
        run = {"config": metrics.get("config", {}), "best": evaluation.get("best"), "final": evaluation.get("final")}
    else:  # written before the runner base
        run = {"config": metrics.get("config", {}), "best": evaluation, "final": metrics.get("eval_final")}
    for _, key in KINDS:
        if not isinstance(run[key], dict) or any(step not in run[key] for step in STEPS):
            raise SystemExit(f"{path} has no complete 'eval' entry for the {key} params (steps {', '.join(STEPS)}): "
                             "did the run finish?")
    return run


def differing_config(runs: list[dict]) -> list[str]:
    """Names of the config fields whose values are not the same in every run."""
    configs = [run.get("config", {}) for run in runs]
    names = sorted(set().union(*configs))
    return [name for name in names if len({json.dumps(c.get(name), sort_keys=True) for c in configs}) > 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output directories of examples/maml_nav.py")
    args = parser.parse_args()
    runs = [load_run(directory) for directory in args.runs]
    differ = differing_config(runs)
    print("config fields that differ between the runs: " + (", ".join(differ) if differ else "none"))
    width = max(len(str(d)) for d in args.runs + [Path("mean")])
    print(f"{'run':{width}} | {'params':6} | " + " | ".join(f"{s} steps" for s in STEPS))
    for name, key in KINDS:
        for directory, run in zip(args.runs, runs):
            values = " | ".join(f"{run[key][s]:7.2f}" for s in STEPS)
            print(f"{str(directory):{width}} | {name:6} | {values}")
        means = " | ".join(f"{statistics.mean(run[key][s] for run in runs):7.2f}" for s in STEPS)
        print(f"{'mean':{width}} | {name:6} | {means}")


if __name__ == "__main__":
    main()
