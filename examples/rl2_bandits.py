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

Every field of ``runners.RL2Config`` is a flag, derived by tyro (``--help`` lists them), with the
earlier short names kept as aliases: ``--k`` / ``--num-arms``, ``--n`` / ``--num-pulls``,
``--trials`` / ``--trials-per-iteration``, ``--minibatches`` / ``--num-minibatches``. Agent
options: ``--value-network separate|shared|detached``, ``--cell-init pytorch|orthogonal``,
``--activation tanh|relu``, ``--weight-norm``, ``--update-gate-bias``, ``--prev-state-input``;
``--target-kl`` stops an iteration's PPO epochs early; ``--entropy-coef-final`` with
``--entropy-decay-iterations`` decays the entropy bonus linearly; ``--compile`` compiles the PPO
gradient. ``--resume`` continues from --output/checkpoint.pt when there is one (else it starts
afresh); ``--overwrite`` writes over an --output that holds a run of other settings.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402

from functional_metarl import checks  # noqa: E402
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
    resolve_device,
)

from _cli import usage_error  # noqa: E402

# Duan et al. 2016, Table 1, as quoted in issue #12: mean total reward per trial by (k, n). The
# paper's UCB1 starts every arm at one success and one failure: our "ucb1_beta" (issue 28).
PAPER = {(5, 10): {"rl2": 6.7, "ucb1_beta": 6.7, "thompson": 5.7},
         (10, 100): {"rl2": 83.5, "ucb1_beta": 82.4, "thompson": 76.7}}
#: This script's defaults where they are not RL2Config's.
DEFAULTS = dict(iterations=1500, trials_per_iteration=256, hidden=256, output="runs/rl2_bandits")


@dataclass
class RL2Args(RL2Config):
    """The command line both RL² examples share: every field of RL2Config is a flag, derived by
    tyro as in ``functional-metarl train`` (``--lr``, ``--gae-lambda``, ``--value-network``, ...);
    the fields whose flags had shorter names before keep them as aliases. The fields after the
    config's are the example's own (evaluation, MAML comparison, output)."""

    env: tyro.conf.Suppress[str] = RL2Config.env  # set by each script
    # trials (tasks) per iteration
    trials_per_iteration: Annotated[int, tyro.conf.arg(aliases=("--trials",))] = RL2Config.trials_per_iteration
    # PPO minibatches per epoch (split over trials)
    num_minibatches: Annotated[int, tyro.conf.arg(aliases=("--minibatches",))] = RL2Config.num_minibatches

    max_minutes: float | None = None  # stop training (with a checkpoint) after this many minutes, then evaluate
    eval_tasks: int = 2000  # held-out tasks for the final evaluation
    maml_iterations: int = 0  # also meta-train MAML-TRPO (categorical MLP policy) this many iterations; 0: skip
    maml_meta_batch: int = 40  # MAML tasks per meta-iteration
    maml_inner_lr: float = 0.5  # MAML's inner step size
    maml_hidden: tuple[int, ...] = (32,)  # MAML policy's hidden layer sizes
    threads: int = 1  # torch intra-op threads on CPU
    output: str = "runs/rl2"  # directory for metrics, checkpoint, plot
    resume: bool = False  # continue from OUTPUT/checkpoint.pt when there is one
    overwrite: bool = False  # start again over OUTPUT when it holds a run of other settings
    no_progress: bool = False

    def __post_init__(self) -> None:
        """RL2Config's checks, then the example's own fields; each message is led by the flag
        (and its alias) of the field it names, as tyro reports it (exit status 2)."""
        try:
            super().__post_init__()
            if self.max_minutes is not None:
                checks.positive_number(self.max_minutes, "max_minutes")
            checks.int_in_range(self.eval_tasks, "eval_tasks", low=2)  # a standard error needs two tasks
            checks.non_negative_int(self.maml_iterations, "maml_iterations")
            for name in ("maml_meta_batch", "threads"):
                checks.positive_int(getattr(self, name), name)
            checks.positive_number(self.maml_inner_lr, "maml_inner_lr")
            if not self.maml_hidden:
                raise ValueError("maml_hidden must list at least one layer size, got none")
            for size in self.maml_hidden:
                checks.positive_int(size, "maml_hidden")
            resolve_device(self.device)
        except (TypeError, ValueError) as error:
            raise type(error)(_name_flag(str(error), type(self))) from None

    @property
    def config(self) -> RL2Config:
        """The trainer's settings: the RL2Config fields of the command line."""
        return RL2Config(**{f.name: getattr(self, f.name) for f in fields(RL2Config)})


@dataclass
class Args(RL2Args):
    """RL² on Bernoulli bandits: ``--k`` arms (``--num-arms``), ``--n`` pulls per trial (``--num-pulls``)."""

    env: tyro.conf.Suppress[str] = "bandit"
    num_arms: Annotated[int, tyro.conf.arg(aliases=("--k",))] = RL2Config.num_arms  # arms (k)
    num_pulls: Annotated[int, tyro.conf.arg(aliases=("--n",))] = RL2Config.num_pulls  # pulls per trial (n)
    num_episodes: tyro.conf.Suppress[int] = RL2Config.num_episodes  # an MDP setting


ArgsT = TypeVar("ArgsT", bound=RL2Args)


def parse_args(cls: type[ArgsT], defaults: dict[str, Any], argv: list[str] | None = None, *,
               prog: str, description: str | None) -> ArgsT:
    """The command line as ``cls`` with the script's ``defaults``; every field is checked as it is
    built (:meth:`RL2Args.__post_init__`), before anything else is, and a bad value is a usage
    error (exit status 2) naming the flag."""
    try:
        return tyro.cli(cls, args=argv, default=cls(**defaults), prog=prog, description=description)
    except (TypeError, ValueError) as error:  # tyro reports the fields' own checks; anything else here
        usage_error(prog, _name_flag(str(error), cls))


def _name_flag(message: str, cls: type) -> str:
    """``message`` led by the flags of the first field it names (``num_arms must be ...`` ->
    ``--k/--num-arms: num_arms must be ...``)."""
    if message.startswith("--"):  # it names its flag already
        return message
    names = {f.name for f in fields(cls)}
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message):
        if word in names:
            return f"{'/'.join([*_aliases(cls, word), '--' + word.replace('_', '-')])}: {message}"
    return message


def _aliases(cls: type, name: str) -> tuple[str, ...]:
    """The aliases a field's ``tyro.conf.arg`` gives its flag."""
    for marker in getattr(get_type_hints(cls, include_extras=True)[name], "__metadata__", ()):
        if getattr(marker, "aliases", None):
            return tuple(marker.aliases)
    return ()


def run(args: RL2Args, paper: dict[str, float], title: str, prog: str = "rl2_bandits.py") -> dict:
    """Train (or resume), evaluate every method on the same held-out tasks, write metrics and the plot.

    ``metrics.json``'s ``eval``: ``evaluate()``'s ``"<method>/mean"`` / ``"/stderr"`` /
    ``"/num_tasks"`` entries, the paper's numbers as ``"paper/<method>"`` and the run's totals
    (wall time, env steps, throughput, the MAML run's settings and curve when it ran). ``prog``:
    the script's name, for its usage errors.
    """
    # The whole-trial BPTT keeps hundreds of large activations per PPO step; with glibc's own
    # settings each is a fresh mmap plus page faults (3.9x slower at 256 MDP trials, 1.2x at 64).
    keep_freed_cpu_memory()
    torch.set_num_threads(args.threads)
    config = args.config
    output = Path(args.output)
    trainer = RL2Trainer(config, output)
    if args.resume and (output / CHECKPOINT_FILE).is_file():  # else a fresh start, as before issue 26
        try:
            trainer.load_checkpoint(output / CHECKPOINT_FILE)
        except ValueError as error:  # unreadable, or a run of other settings: say so, no traceback
            usage_error(prog, f"--resume: {error}")
        print(f"resumed at iteration {trainer.iteration}")
    start = time.perf_counter()
    try:
        trainer.train(progress=not args.no_progress, overwrite=args.overwrite,
                      max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    except FileExistsError as error:  # OUTPUT holds a run of other settings: say so, no traceback
        usage_error(prog, f"--output: {error} (--overwrite writes over it)")
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
        maml.train(progress=not args.no_progress, overwrite=args.overwrite)
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(Args, DEFAULTS, argv, prog="rl2_bandits.py", description=__doc__)
    k, n = args.num_arms, args.num_pulls
    paper = dict(PAPER.get((k, n), {}))
    if (k, n) in RL2_PAPER_GITTINS:
        paper["gittins"] = RL2_PAPER_GITTINS[(k, n)]
    run(args, paper, f"RL² on Bernoulli bandits, k={k}, n={n}")


if __name__ == "__main__":
    main()
