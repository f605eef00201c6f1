"""Compare the per-iteration metrics of two runs' ``metrics.json``: max abs difference per metric.

    python benchmarks/compare_metrics.py BEFORE/metrics.json AFTER/metrics.json

Used to check "same seed, same numbers" across the runner-base refactor (see
``docs/results/refactor-same-numbers.md``). Either file may be in the runner base's layout
(``{"config", "history", "eval"}``) or in a layout written before it:

- ``"iterations"`` (RL²) or ``"episodes"`` (Rainbow, DDPG / TD3, deep Option-Critic) hold the
  per-iteration / per-episode rows;
- ``"mean_steps_to_goal"`` (tabular Option-Critic) is one number per episode, compared as
  ``steps_to_goal``; its ``"doorway_termination"`` as the new ``eval``'s
  ``doorway_before_goal_move`` ... entries;
- deep Option-Critic's per-episode ``"episodes"`` (a file with ``"rounds"``) are grouped into
  rounds of ``config["num_envs"]`` episodes and averaged (``numpy.mean`` in the order they
  ended, as the runner does), its last ``"evaluations"`` entry is its ``eval``;
- the MAML examples' old ``"eval"`` / ``"eval_final"`` are compared as the new ``eval``'s
  ``"best"`` / ``"final"``;
- old Rainbow's end-of-run ``"summary"`` is compared with the last value of each of its metrics
  in the other file.

Rows are matched per metric: the values of a metric, in the order of the rows that hold it, are
compared element by element (so rows that only hold other metrics do not shift the alignment).
``eval`` entries present in both files are compared too (nested dicts flattened with ``/``).
Wall-clock metrics (seconds, steps per second) and row indices (``iteration``, ``step``,
``episode``) are left out. Exit status 1 when a shared metric differs by more than ``--tol`` or
its counts differ.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

# Metrics that measure wall-clock time, not training: never equal between two runs.
TIMING = {"seconds", "sampling_seconds", "steps_per_second", "env_steps_per_s", "updates_per_s", "wall_seconds", "time"}
# Keys renamed by the refactor: old name -> new name.
RENAMES = {"mean_steps_to_goal": "steps_to_goal", "iteration": "iteration"}
# Row keys that are indices, not metrics.
INDEX_KEYS = {"iteration", "step", "episode"}


def rows_of(payload: dict[str, Any]) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The per-iteration rows of a metrics.json (new layout or old) and the end-of-run values
    (old Rainbow's ``summary``) that are compared with the last value of each metric."""
    if "history" in payload:
        return list(payload["history"]), {}
    if "iterations" in payload and isinstance(payload["iterations"], list):
        return list(payload["iterations"]), {}
    rows: list[dict[str, float]] = []
    episodes = payload.get("episodes")
    if isinstance(episodes, list) and "rounds" in payload:  # old deep Option-Critic: group by rounds
        n = int(payload["config"]["num_envs"])
        for i in range(0, len(episodes), n):
            chunk = episodes[i:i + n]
            rows.append({k: float(np.mean([e[k] for e in chunk if k in e]))
                         for k in ("return", "length", "option_duration", "success") if any(k in e for e in chunk)})
    elif isinstance(episodes, list):
        rows += episodes
    if "mean_steps_to_goal" in payload:
        rows += [{"steps_to_goal": v} for v in payload["mean_steps_to_goal"]]
    final = payload.get("summary") if isinstance(payload.get("summary"), dict) else {}
    return rows, {k: v for k, v in final.items() if k not in INDEX_KEYS}


def series(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``metric -> values`` in row order, renamed, timing and index keys left out."""
    out: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            key = RENAMES.get(key, key)
            if key in TIMING or key in INDEX_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            out.setdefault(key, []).append(float(value))
    return out


def flat_eval(payload: dict[str, Any]) -> dict[str, float]:
    """``eval`` (or an old ``extra`` / ``evaluations`` / ``doorway_termination``) flattened to ``"a/b" -> float``."""
    ev = payload.get("eval")
    if "eval_final" in payload:  # the MAML examples before the runner base: best params' eval beside the latest's
        ev = {"best": ev, "final": payload["eval_final"]}
    if ev is None and isinstance(payload.get("extra"), dict):
        ev = payload["extra"]
    if ev is None and payload.get("evaluations"):
        ev = payload["evaluations"][-1]
    if ev is None and isinstance(payload.get("doorway_termination"), dict):
        ev = {f"{stat}_{phase}": v for phase, d in payload["doorway_termination"].items() for stat, v in d.items()}
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = float(value)

    walk("", ev or {})
    return {k: v for k, v in out.items()
            if k.split("/")[-1] not in TIMING and k not in INDEX_KEYS and "seconds" not in k}


def max_abs_diff(a: list[float], b: list[float]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        if math.isnan(x) and math.isnan(y):
            continue
        worst = max(worst, abs(x - y)) if not (math.isnan(x) or math.isnan(y)) else math.inf
    return worst


def compare(path_a: str, path_b: str, tol: float = 0.0) -> bool:
    """Print the comparison; True when every shared metric agrees within ``tol``."""
    a, b = json.load(open(path_a)), json.load(open(path_b))
    (rows_a, final_a), (rows_b, final_b) = rows_of(a), rows_of(b)
    sa, sb = series(rows_a), series(rows_b)
    ok = True
    print(f"{'metric':<28} {'n(A)':>6} {'n(B)':>6} {'max |A-B|':>12}")
    for key in sorted(set(sa) | set(sb)):
        if key not in sa or key not in sb:
            print(f"{key:<28} {len(sa.get(key, [])):>6} {len(sb.get(key, [])):>6} {'only in ' + ('A' if key in sa else 'B'):>12}")
            continue
        n = min(len(sa[key]), len(sb[key]))
        diff = max_abs_diff(sa[key][:n], sb[key][:n])
        same_count = len(sa[key]) == len(sb[key])
        ok &= same_count and diff <= tol
        print(f"{key:<28} {len(sa[key]):>6} {len(sb[key]):>6} {diff:>12.3g}" + ("" if same_count else "  (counts differ)"))
    for final, other, name in ((final_a, sb, "A"), (final_b, sa, "B")):
        for key, value in final.items():
            key = RENAMES.get(key, key)
            if key in other and isinstance(value, (int, float)):
                diff = max_abs_diff([float(value)], other[key][-1:])
                ok &= diff <= tol
                print(f"{name}'s end-of-run {key:<15} {'':>6} {'':>6} {diff:>12.3g}")
    ea, eb = flat_eval(a), flat_eval(b)
    shared = sorted(set(ea) & set(eb))
    for key in shared:
        diff = abs(ea[key] - eb[key])
        ok &= diff <= tol
        print(f"eval {key:<23} {'':>6} {'':>6} {diff:>12.3g}")
    print("SAME" if ok else "DIFFERENT", f"(tolerance {tol:g})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="metrics.json of the first run (e.g. before the change)")
    parser.add_argument("b", help="metrics.json of the second run")
    parser.add_argument("--tol", type=float, default=0.0, help="largest allowed absolute difference (default 0: bit-identical)")
    args = parser.parse_args(argv)
    return 0 if compare(args.a, args.b, args.tol) else 1


if __name__ == "__main__":
    sys.exit(main())
