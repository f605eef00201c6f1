"""How far the TRPO meta-step's conjugate gradient is from converged, on 2D navigation.

    python benchmarks/trpo_cg_convergence.py                         # default run, 150 meta-iterations
    python benchmarks/trpo_cg_convergence.py --iterations 300 --every 100

Trains the default ``MAMLTrainer`` (``examples/maml_nav.py``'s settings) and, at meta-iterations
1, ``every``, 2 ``every``, ..., takes the step's curvature operator and meta-gradient and solves
for the TRPO direction with k CG iterations and with ``--reference-iters`` (60). For each k it
prints the cosine between the k-iteration and the reference step, and ``g.s_k / g.s_ref``, the
first-order loss decrease of the k-iteration step relative to the reference one (both steps are
scaled to the same KL bound, so this ratio is what a shorter solve gives up per meta-step).
Training itself uses the configured ``cg_iters``; the extra solves only read the operator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import torch

from functional_metarl.meta import meta_steps
from functional_metarl.rl.trpo import trpo_step_direction
from functional_metarl.runners import MAMLConfig, MAMLTrainer


def cg_rows(curvature, grad: torch.Tensor, max_kl: float, damping: float, cg_iters: list[int],
            reference_iters: int) -> list[dict[str, float]]:
    """Cosine and relative first-order decrease of each k-iteration step against the reference."""
    reference = trpo_step_direction(curvature, grad, max_kl, reference_iters, damping)
    rows = []
    for k in cg_iters:
        step = trpo_step_direction(curvature, grad, max_kl, k, damping)
        rows.append({"cg_iters": k, "cosine": float(torch.nn.functional.cosine_similarity(step, reference, dim=0)),
                     "decrease_ratio": float(grad @ step / (grad @ reference))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=150, help="meta-iterations to train")
    parser.add_argument("--every", type=int, default=50, help="record at iteration 1 and every this many")
    parser.add_argument("--cg-iters", type=int, nargs="+", default=[2, 4, 5, 6, 8, 10, 15, 20])
    parser.add_argument("--reference-iters", type=int, default=60)
    parser.add_argument("--meta-batch-size", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    for name in ("iterations", "every", "reference_iters", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.cg_iters) < 1:
        parser.error(f"--cg-iters must all be >= 1, got {args.cg_iters}")
    torch.set_num_threads(args.threads)
    trainer = MAMLTrainer(MAMLConfig(iterations=args.iterations, meta_batch_size=args.meta_batch_size,
                                     seed=args.seed, device="cpu"))
    trpo = trainer.config.trpo  # meta.trpo looks trpo_step_direction up in meta.meta_steps at call time
    records: list[dict] = []
    record_now = False

    def recording_direction(curvature, grad, max_kl, cg_iters=10, damping=1e-5):
        # the step's own direction is unchanged; the extra solves only apply the same operator
        if record_now:
            records.append({"iteration": trainer.iteration + 1,
                            "rows": cg_rows(curvature, grad, max_kl, damping, args.cg_iters, args.reference_iters)})
        return trpo_step_direction(curvature, grad, max_kl, cg_iters, damping)

    with mock.patch.object(meta_steps, "trpo_step_direction", recording_direction):
        for i in range(args.iterations):
            record_now = i == 0 or (i + 1) % args.every == 0
            trainer.train_iteration()
    print(f"default MAML-TRPO on 2D navigation (configured cg_iters {trpo.cg_iters}, damping {trpo.cg_damping}); "
          f"reference: {args.reference_iters} CG iterations")
    print("iteration | " + " | ".join(f"k={k}: cos / decrease" for k in args.cg_iters))
    for rec in records:
        print(f"{rec['iteration']:9d} | " + " | ".join(f"{r['cosine']:.3f} / {r['decrease_ratio']:.3f}" for r in rec["rows"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"config": trainer.config.to_dict(), "records": records}, indent=1))


if __name__ == "__main__":
    main()
