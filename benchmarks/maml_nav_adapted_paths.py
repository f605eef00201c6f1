"""Where do the adapted 2D-navigation policies go? A diagnosis of a trained checkpoint.

    python benchmarks/maml_nav_adapted_paths.py runs/maml_nav/checkpoint.pt
    python benchmarks/maml_nav_adapted_paths.py runs/maml_nav/checkpoint.pt --params best --seed 777

For the latest (or best) meta-params of a ``MAMLTrainer`` checkpoint, on 40 goals drawn from
``--seed`` (not the held-out evaluation's seed), it adapts as the evaluation does (40 episodes
per step, step sizes ``(inner_lr, inner_lr / 10)``, learned step sizes if the run learned them)
and prints, after 0..3 steps:

* the mean return of sampled episodes and of the *mean* action (zero noise): if they agree,
  exploration noise is not what costs return;
* the mean return of the goals near the start (distance below 0.25), in the middle (0.25 to 0.5)
  and far (beyond 0.5): one gradient step moves the policy by about the same amount whatever
  the goal, so near goals get overshot and far ones under-reached. Before the first step it
  also prints the spread (std) of the raw advantages (baseline residuals, not normalized) per
  band: if it does not grow with the goal's distance, raw advantages carry no more distance
  information than normalized ones (the reward's gradient in the position has norm 1). It also
  prints the norm of the first inner gradient per band and the cosine between the output
  bias's descent direction and the goal direction: a direction that points at the goal with a
  norm that barely grows with the distance makes one step move every policy about equally far
  (``--log-std-shift S`` widens the meta-params' exploration first, to see whether that changes);
* for the mean-action paths, the median distance to the goal at steps 10, 50 and 99 (of 100) and the mean
  distance moved per step over the last 40 steps: a path that stops has a fixed point that far
  from the goal, one that keeps moving 0.14 per step bounces between clipped diagonal actions.

Then it asks how much of the one-step return a fixed step length costs: from the same first
batch of episodes it takes one inner step at each of ``--step-scales`` times the run's step size
and prints the one-step return per band. A step that cannot see the goal's distance has to pick
one length for all goals; the row "best scale per band" is the return if each band could take its
own best length (chosen on these same goals, so an optimistic figure).

For a ``--learn-inner-lr`` run it first prints the learned step sizes per parameter tensor. It
also refits the linear feature baseline of the first batch in float64 and prints the largest
relative difference of the fitted values, to rule out an ill-conditioned float32 fit.
"""

from __future__ import annotations

import argparse
import math
from functools import partial

import torch
from torch.func import grad, vmap
from _common import parse_and_load_checkpoint  # benchmarks/_common.py (this folder is on sys.path)

from functional_metarl.envs import rollout
from functional_metarl.meta import make_rl_batches, reinforce_loss
from functional_metarl.rl import discounted_returns, linear_baseline_values
from functional_metarl.tree import tree_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", choices=("latest", "best"), default="latest")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--log-std-shift", type=float, default=0.0,
                        help="add this to the meta-params' log-std first (does wider exploration make the "
                             "first gradient's norm depend on the goal's distance?)")
    parser.add_argument("--step-scales", type=float, nargs="+", default=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
                        help="multiples of the run's inner step size for the first-step length scan")
    args, trainer = parse_and_load_checkpoint(parser)
    if not all(scale > 0 and math.isfinite(scale) for scale in args.step_scales):
        parser.error(f"--step-scales must be positive finite numbers, got {args.step_scales}")
    config = trainer.config
    params, learned = ((trainer.params, trainer.learned_lrs) if args.params == "latest"
                       else (trainer.best_params, trainer.best_learned_lrs))
    if args.log_std_shift:
        params = {**params, "log_std": params["log_std"] + args.log_std_shift}
    if learned is not None:  # a --learn-inner-lr run: what the meta-learner made of its step sizes
        for name, lr in learned.items():
            print(f"learned step sizes of {name}: mean {float(lr.mean()):.3f}, min {float(lr.min()):.3f}, "
                  f"max {float(lr.max()):.3f}")
    gen = torch.Generator().manual_seed(args.seed)
    tasks = trainer.sampler.env.sample_tasks(args.tasks, gen)
    adapted = tree_map(lambda p: p.expand(args.tasks, *p.shape).clone(), params)
    lrs = (config.inner_lr, config.inner_lr / 10)
    print(f"{args.checkpoint} ({args.params} params, meta-iteration {trainer.iteration}), {args.tasks} goals, seed {args.seed}")
    t = config.horizon
    goal_distance = tasks.goal.norm(dim=-1)
    bins = {"near": goal_distance < 0.25, "mid": (goal_distance >= 0.25) & (goal_distance < 0.5),
            "far": goal_distance >= 0.5}
    print("goals near / mid / far: " + " / ".join(str(int(b.sum())) for b in bins.values()))
    print(f"{'steps':>5} | {'sampled':>8} | {'near/mid/far':>20} | {'mean action':>11} | "
          f"{f'median dist t={t // 10}/{t // 2}/{t - 1}':>22} | {'moved per step':>14}")
    for step in range(4):
        episodes = trainer.sample(adapted, tasks, per_task=True, generator=gen, episodes_per_task=40)[0]
        noiseless = rollout(adapted, tasks, torch.zeros(config.horizon, args.tasks, 1, 2), trainer.sampler.env, trainer.policy,
                            params_per_task=True)
        position = noiseless.obs[:, :, 0]  # [N, T, 2]: the position before each step
        distance = (position - tasks.goal[:, None]).norm(dim=-1)
        horizon = position.shape[1]
        window = min(40, horizon - 1)
        moved = (position[:, -window:] - position[:, -window - 1:-1]).norm(dim=-1).mean()
        medians = "/".join(f"{float(distance[:, t].median()):.3f}" for t in (horizon // 10, horizon // 2, horizon - 1))
        task_returns = episodes.rewards.sum(1).mean(-1)  # [N]
        by_distance = "/".join(f"{float(task_returns[b].mean()):.1f}" if b.any() else "-" for b in bins.values())
        print(f"{step:>5} | {float(episodes.rewards.sum(1).mean()):8.2f} | {by_distance:>20} | "
              f"{float(noiseless.rewards.sum(1).mean()):11.2f} | {medians:>22} | {float(moved):14.4f}")
        batch = trainer.inner_batch(episodes)
        if step == 0:
            raw = make_rl_batches(episodes, config.gamma, config.gae_lambda, normalize=False)
            spread = torch.stack([raw.advantages[i][raw.mask[i].bool()].std() for i in range(args.tasks)])
            print("      raw advantage std near/mid/far: "
                  + "/".join(f"{float(spread[b].mean()):.2f}" if b.any() else "-" for b in bins.values()))
            grads = vmap(grad(partial(reinforce_loss, policy=trainer.policy)), in_dims=(None, 0))(params, batch)
            norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))  # [N]
            out_bias = grads[[k for k in params if k.startswith("mean.")][-1]]  # [N, 2]
            cosine = torch.nn.functional.cosine_similarity(-out_bias, tasks.goal, dim=-1)
            print("      first inner gradient norm near/mid/far: "
                  + "/".join(f"{float(norms[b].mean()):.2f}" if b.any() else "-" for b in bins.values())
                  + f"; cosine(output-bias descent, goal direction) median {float(cosine.median()):.2f}")
            returns = discounted_returns(episodes.rewards[0], episodes.mask[0], config.gamma)
            values = linear_baseline_values(episodes.obs[0], returns, episodes.mask[0])
            values64 = linear_baseline_values(episodes.obs[0].double(), returns.double(), episodes.mask[0].double())
            rel = float((values.double() - values64).abs().max() / values64.abs().max())
            print(f"      linear baseline of the first task, float32 vs float64 fit: max relative difference {rel:.1e}")
        if step == 0:
            first_step_length_scan(trainer, adapted, batch, tasks, bins, args.step_scales, lrs[0], learned, args.seed)
        adapted = trainer.adapt_batch(adapted, batch, per_task=True, lr=lrs[min(step, 1)], learned_lrs=learned)


def first_step_length_scan(trainer, meta, batch, tasks, bins, scales, lr, learned, seed) -> None:
    """One-step return per band after a first step of ``scale * lr`` for each scale, from the same
    pre-update ``batch``; the post-update episodes of every scale use the same noise (``seed``)."""
    names = list(bins)
    per_scale = []
    for scale in scales:
        adapted = trainer.adapt_batch(meta, batch, per_task=True, lr=scale * lr, learned_lrs=learned)
        gen = torch.Generator().manual_seed(seed + 1)
        episodes = trainer.sample(adapted, tasks, per_task=True, generator=gen, episodes_per_task=40)[0]
        task_returns = episodes.rewards.sum(1).mean(-1)  # [N]
        per_scale.append([float(task_returns[b].mean()) if b.any() else math.nan for b in bins.values()])
    print(f"      first step of scale x {lr:g} (same pre-update episodes), one-step return "
          + "/".join(names) + ":")
    for scale, row in zip(scales, per_scale):
        print(f"        x {scale:<5g} " + " / ".join(f"{r:.1f}" for r in row))
    counts = [int(b.sum()) for b in bins.values()]
    best = [max(row[i] for row in per_scale) for i in range(len(names))]
    best_scales = [scales[max(range(len(scales)), key=lambda k: per_scale[k][i])] for i in range(len(names))]
    pooled = sum(c * r for c, r in zip(counts, best) if c) / sum(counts)
    print("        best scale per band: " + " / ".join(f"{r:.1f} (x {k:g})" for r, k in zip(best, best_scales))
          + f"; all goals {pooled:.1f}")


if __name__ == "__main__":
    main()
