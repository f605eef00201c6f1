"""RL² on Bernoulli multi-armed bandits (Duan et al. 2016, section 3.1), end to end.

    python examples/rl2_bandits.py --k 5 --n 10                       # ~ a few minutes on 2 CPU cores
    python examples/rl2_bandits.py --k 10 --n 100 --output runs/rl2_k10_n100
    python examples/rl2_bandits.py --output runs/rl2_k5_n10 --resume   # continue from the checkpoint

Trains a GRU actor-critic (input: previous arm one-hot, previous reward, previous done) with
PPO on trials of n pulls of a k-armed bandit with arm means uniform in [0, 1]; GAE runs over the
whole trial and gradients flow through the whole trial. Then scores RL² and the classic agents
(random, greedy with a uniform prior, UCB1, Thompson sampling, the Gittins index with its
discount tuned on separate tasks; UCB1 also with the paper's starting counts, ``ucb1_beta``),
the memory gauge (the greedy-with-prior agent remembering only the last W = 10 / 20 / 30 pulls or
all of them: ``memory_*``) and, with --maml-iterations, MAML-TRPO with a categorical
policy (half the trial before its inner step, half after) on the same --eval-tasks held-out
bandits with the same reward noise: mean total reward per trial and its standard error. The
paper's numbers are printed beside ours. Writes metrics.json (training
curve, final evaluation, wall time, env steps/s), checkpoint.pt, TensorBoard events and
learning_curve.png into --output (the MAML run's own checkpoint.pt and metrics.json into
--output/maml).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from functional_metarl.envs import RL2_PAPER_GITTINS  # noqa: E402
from functional_metarl.meta import maml_trial_returns  # noqa: E402
from functional_metarl.runners import (  # noqa: E402
    CHECKPOINT_FILE,
    MAMLConfig,
    MAMLTrainer,
    RL2Config,
    RL2Trainer,
    SplitTrialSampler,
    keep_freed_cpu_memory,
    make_rl2_env,
)

# Duan et al. 2016, Table 1, as quoted in issue #12: mean total reward per trial by (k, n). The
# paper's UCB1 starts every arm at one success and one failure: our "ucb1_beta" (issue 28).
PAPER = {(5, 10): {"rl2": 6.7, "ucb1_beta": 6.7, "thompson": 5.7},
         (10, 100): {"rl2": 83.5, "ucb1_beta": 82.4, "thompson": 76.7}}


def add_common_args(parser: argparse.ArgumentParser, iterations: int, trials: int, hidden: int, output: str) -> None:
    """Flags shared by the RL² examples."""
    parser.add_argument("--iterations", type=int, default=iterations)
    parser.add_argument("--trials", type=int, default=trials, help="trials (tasks) per iteration")
    parser.add_argument("--hidden", type=int, default=hidden, help="GRU hidden units")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=4, help="PPO epochs per iteration")
    parser.add_argument("--minibatches", type=int, default=4, help="PPO minibatches per epoch (split over trials)")
    parser.add_argument("--entropy-coef", type=float, default=0.01)
    parser.add_argument("--entropy-coef-final", type=float, default=None,
                        help="decay the entropy coefficient linearly to this (needs --entropy-decay-iterations)")
    parser.add_argument("--entropy-decay-iterations", type=int, default=None,
                        help="iterations over which --entropy-coef decays to --entropy-coef-final")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--gae-lambda", type=float, default=0.3)
    parser.add_argument("--reward-scale", type=float, default=1.0,
                        help="rewards x this for advantages and value targets (keep value targets O(1) on long trials)")
    parser.add_argument("--value-network", default="separate", choices=("separate", "shared", "detached"),
                        help="the value head's GRU: its own (the paper's), the policy's, or the policy's with a stopped gradient")
    parser.add_argument("--cell-init", default="pytorch", choices=("pytorch", "orthogonal"),
                        help="orthogonal: orthogonal hidden-to-hidden blocks and zero biases (the paper's)")
    parser.add_argument("--activation", default="tanh", choices=("tanh", "relu"), help="the GRU candidate's nonlinearity")
    parser.add_argument("--weight-norm", action="store_true", help="weight-normalised GRU weights (the paper's)")
    parser.add_argument("--update-gate-bias", type=float, default=None,
                        help="initial update-gate bias (> 0: the cell starts remembering); default: the init's")
    parser.add_argument("--prev-state-input", action="store_true",
                        help="the previous observation in the input too (a departure from the paper)")
    parser.add_argument("--target-kl", type=float, default=None,
                        help="stop an iteration's PPO epochs once the minibatch KL exceeds this")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training (with a checkpoint) after this many minutes of wall time, then evaluate")
    parser.add_argument("--eval-tasks", type=int, default=2000, help="held-out tasks for the final evaluation")
    parser.add_argument("--maml-iterations", type=int, default=0,
                        help="also meta-train MAML-TRPO (categorical MLP policy) for this many iterations; 0: skip")
    parser.add_argument("--maml-meta-batch", type=int, default=40, help="MAML tasks per meta-iteration")
    parser.add_argument("--maml-inner-lr", type=float, default=0.5)
    parser.add_argument("--maml-hidden", type=int, nargs="+", default=[32])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda'")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the PPO gradient")
    parser.add_argument("--output", default=output)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true")


def run(config: RL2Config, args: argparse.Namespace, paper: dict[str, float], title: str) -> dict:
    """Train (or resume), evaluate every method on the same held-out tasks, write metrics and the plot.

    ``metrics.json``'s ``eval``: ``evaluate()``'s ``"<method>/mean"`` / ``"/stderr"`` /
    ``"/num_tasks"`` entries, the paper's numbers as ``"paper/<method>"`` and the run's totals
    (wall time, env steps, throughput, the MAML run's settings and curve when it ran).
    """
    # The whole-trial BPTT keeps hundreds of large activations per PPO step; with glibc's own
    # settings each is a fresh mmap plus page faults (3.9x slower at 256 MDP trials, 1.2x at 64).
    keep_freed_cpu_memory()
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    trainer = RL2Trainer(config, output)
    if args.resume and (output / CHECKPOINT_FILE).is_file():
        trainer.load_checkpoint(output / CHECKPOINT_FILE)
        print(f"resumed at iteration {trainer.iteration}")
    start = time.perf_counter()
    trainer.train(progress=not args.no_progress,
                  max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    train_seconds = time.perf_counter() - start
    total_train_seconds = sum(m["seconds"] for m in trainer.history)
    others, maml_extra = {}, {}
    if args.maml_iterations > 0:
        sampler = SplitTrialSampler(make_rl2_env(config))  # half the trial before the inner step, half after
        maml = MAMLTrainer(MAMLConfig(iterations=args.maml_iterations, meta_batch_size=args.maml_meta_batch,
                                      inner_lr=args.maml_inner_lr, hidden=tuple(args.maml_hidden), horizon=sampler.horizon,
                                      seed=config.seed, device=config.device, checkpoint_every=25),
                           output / "maml", sampler=sampler)
        # Its own directory: every runner writes checkpoint.pt and metrics.json (runners.CHECKPOINT_FILE).
        if args.resume and (output / "maml" / CHECKPOINT_FILE).is_file():
            maml.load_checkpoint(output / "maml" / CHECKPOINT_FILE)
        maml.train(progress=not args.no_progress)
        others["maml"] = lambda tasks, env_noise, gumbel_u: maml_trial_returns(
            maml.params, tasks, env_noise, gumbel_u, sampler.env, maml.policy, maml.inner_opt, num_pre=sampler.num_pre,
            gamma=maml.config.gamma, gae_lambda=maml.config.gae_lambda)
        maml_extra = {"maml_config": maml.config.to_dict(), "maml_iterations": maml.history,
                      "maml_train_seconds_total": sum(m["seconds"] for m in maml.history)}
    start = time.perf_counter()
    evaluation = trainer.evaluate(args.eval_tasks, others=others)
    eval_seconds = time.perf_counter() - start
    extra = {
        **evaluation,
        **{f"paper/{k}": v for k, v in paper.items()},
        "wall_seconds_this_session": train_seconds,
        "train_seconds_total": total_train_seconds,
        "eval_seconds": eval_seconds,
        "iterations_done": trainer.iteration,
        "env_steps": trainer.env_steps,
        "env_steps_per_second": trainer.env_steps / max(total_train_seconds, 1e-9),
        "machine": f"{torch.get_num_threads()} torch thread(s), device {trainer.device}",
        **maml_extra,
    }
    trainer.write_metrics(extra)
    methods = {k[: -len("/mean")]: {"mean": v, "stderr": evaluation[k[: -len("/mean")] + "/stderr"]}
               for k, v in evaluation.items() if k.endswith("/mean")}
    plot(trainer.history, methods, paper, output / "learning_curve.png", title)
    for method, r in methods.items():
        print(f"{method:>13}: {r['mean']:.3f} +- {r['stderr']:.3f}  (paper: {paper.get(method, '-')})")
    print(f"training {total_train_seconds:.0f} s, {trainer.env_steps} env steps, "
          f"{extra['env_steps_per_second']:.0f} env steps/s")
    return extra


def plot(history: list[dict], evaluation: dict, paper: dict, path: Path, title: str) -> None:
    """Training curve (mean total reward per trial of each iteration's batch) against the
    baselines' held-out levels."""
    steps = [m["env_steps"] for m in history]
    returns = [m["trial_return"] for m in history]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(steps, returns, color="black", lw=1, label="RL² (training batch)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (method, r) in enumerate(evaluation.items()):
        ax.axhline(r["mean"], ls="--", color=colors[i % len(colors)], label=f"{method} (held-out) {r['mean']:.2f}")
    for method, value in paper.items():
        ax.axhline(value, ls=":", color="gray", lw=0.8)
        ax.annotate(f"{method} (paper) {value}", (0, value), fontsize=6, color="gray", va="bottom")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean total reward per trial")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def common_config(args: argparse.Namespace) -> dict:
    """The RL2Config settings that :func:`add_common_args` defines, from parsed flags."""
    return dict(iterations=args.iterations, trials_per_iteration=args.trials, hidden=args.hidden, lr=args.lr,
                epochs=args.epochs, num_minibatches=args.minibatches, entropy_coef=args.entropy_coef,
                entropy_coef_final=args.entropy_coef_final, entropy_decay_iterations=args.entropy_decay_iterations,
                gamma=args.gamma, gae_lambda=args.gae_lambda, reward_scale=args.reward_scale, seed=args.seed,
                device=args.device, compile=args.compile, value_network=args.value_network, cell_init=args.cell_init,
                activation=args.activation, weight_norm=args.weight_norm, update_gate_bias=args.update_gate_bias,
                prev_state_input=args.prev_state_input, target_kl=args.target_kl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=5, help="arms")
    parser.add_argument("--n", type=int, default=10, help="pulls per trial")
    add_common_args(parser, iterations=1500, trials=256, hidden=256, output="runs/rl2_bandits")
    args = parser.parse_args()
    config = RL2Config(env="bandit", num_arms=args.k, num_pulls=args.n, **common_config(args))
    paper = dict(PAPER.get((args.k, args.n), {}))
    if (args.k, args.n) in RL2_PAPER_GITTINS:
        paper["gittins"] = RL2_PAPER_GITTINS[(args.k, args.n)]
    run(config, args, paper, f"RL² on Bernoulli bandits, k={args.k}, n={args.n}")


if __name__ == "__main__":
    main()
