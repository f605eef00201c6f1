"""The command line and run loop that ``maml_cheetah.py``, ``maml_ant.py`` and ``maml_metaworld.py``
share: MAML-TRPO through ``runners.MAMLTrainer`` with a ``runners.SimulatorSampler`` on a simulator
task family. Each script subclasses :class:`GymMAMLArgs` with its own task fields and builds its
family; everything else (the flags, derived by tyro from ``runners.MAMLConfig`` as in
``maml_nav.py`` and ``functional-metarl train``, run sizes with a ``--paper`` preset, checks of the
flags before anything is built, resume, training) is here.
The scripts run as ``python examples/<name>.py``, which puts this directory on ``sys.path``.
"""

import re
import sys
import time
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import tyro

from functional_metarl import checks
from functional_metarl.envs import success_rates
from functional_metarl.runners import CHECKPOINT_FILE, MAMLConfig, MAMLTrainer, SimulatorSampler, resolve_device

from _cli import usage_error

# The run sizes that --paper switches (MAMLConfig fields).
SIZE_FLAGS = ("iterations", "meta_batch_size", "episodes_per_task", "horizon")

ArgsT = TypeVar("ArgsT", bound="GymMAMLArgs")


@dataclass
class GymMAMLArgs(MAMLConfig):
    """The shared command line: every field of MAMLConfig is a flag (its nested configs as
    --trpo.max-kl, ...); the fields below are the sampler's, evaluation and output settings.
    Each script's ``Args`` subclasses it (``@dataclass``) with its task fields."""

    paper: bool = False  # the paper's run sizes for the sizes not given (see the description)
    vectorization: Literal["sync", "async"] = "sync"  # how the sampler steps its sub-envs
    # the sampler's scale: the env gets clip(scale * action, -1, 1) (MAMLConfig.action_scale is Navigation2D's)
    action_scale: float = 1.0
    eval_tasks: int = 10  # held-out tasks
    eval_episodes: int = 10  # episodes per held-out task and evaluation step
    output: str | None = None  # directory for metrics, checkpoint, plots (default: the script's)
    resume: bool = False  # continue from OUTPUT/checkpoint.pt
    no_progress: bool = False

    def __post_init__(self) -> None:
        """MAMLConfig's checks, their messages led by the flag of the field they name."""
        try:
            super().__post_init__()
        except (TypeError, ValueError) as error:
            raise type(error)(_name_flag(str(error), type(self))) from None

    @property
    def config(self) -> MAMLConfig:
        """The trainer's settings: the MAMLConfig fields of the command line, except ``action_scale``
        (the sampler's here; the trainer's own is unused with a sampler, so it keeps its default)."""
        values = {f.name: getattr(self, f.name) for f in fields(MAMLConfig)}
        values["action_scale"] = MAMLConfig.action_scale
        return MAMLConfig(**values)


def parse_args(cls: type[ArgsT], sizes: dict[str, tuple[int, int]], defaults: dict[str, Any], *, prog: str,
               description: str | None, positive_ints: tuple[str, ...] = (),
               argv: list[str] | None = None) -> ArgsT:
    """The command line as ``cls`` (MAMLConfig checks its fields as it is built), then the
    evaluation and sampler fields, all before anything is built; a bad value is a usage error
    (exit 2) naming the flag. ``sizes``: ``{field: (short default, --paper value)}`` for every name
    in ``SIZE_FLAGS``; ``defaults``: the script's other defaults; ``positive_ints``: the script's
    own int fields that must be positive."""
    argv = sys.argv[1:] if argv is None else list(argv)
    paper = _last_bool_flag(argv, "paper")
    default = cls(**{name: pair[1 if paper else 0] for name, pair in sizes.items()}, **defaults, paper=paper)
    try:
        args = tyro.cli(cls, args=argv, default=default, prog=prog, description=description)
        for name in ("eval_tasks", "eval_episodes", *positive_ints):
            checks.positive_int(getattr(args, name), _flag(name))
        checks.positive_number(args.action_scale, "--action-scale")
        resolve_device(args.device)
    except (TypeError, ValueError) as error:
        usage_error(prog, _name_flag(str(error), cls))
    return args


def _last_bool_flag(argv: list[str], name: str) -> bool:
    """Whether ``--name`` (rather than ``--no-name``, or neither) comes last in ``argv``: the
    preset that sets the other defaults is known before the command line is parsed with them."""
    flag = _flag(name)
    seen = [a for a in argv if a in (flag, f"--no-{name.replace('_', '-')}")]
    return bool(seen) and seen[-1] == flag


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _name_flag(message: str, cls: type) -> str:
    """``message`` led by the flag of the first field it names (a config check names the field:
    ``meta_batch_size must be ...`` -> ``--meta-batch-size: meta_batch_size must be ...``)."""
    if "--" in message:  # it names its flag already
        return message
    paths: dict[str, str] = {}
    for f in fields(cls):
        paths.setdefault(f.name, f.name)
        nested = f.default if f.default_factory is MISSING else f.default_factory()
        if is_dataclass(nested):
            for g in fields(nested):
                paths.setdefault(g.name, f"{f.name}.{g.name}")
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message):
        if word in paths:
            return f"{'--' + paths[word].replace('_', '-')}: {message}"
    return message


def train(family: Any, args: GymMAMLArgs, success_key: str | None = None) -> tuple[MAMLTrainer, list[dict], float]:
    """Build the trainer from the flags (resuming with ``--resume``) and train it; returns
    ``(trainer, history, training seconds)``. The caller evaluates, writes metrics and closes it."""
    config = args.config
    sampler = SimulatorSampler(family, seed=args.seed, vectorization=args.vectorization, action_scale=args.action_scale,
                               success_key=success_key)
    output = Path(args.output)
    trainer = MAMLTrainer(config, output_dir=output, sampler=sampler)
    if args.resume:
        trainer.load_checkpoint(output / CHECKPOINT_FILE)
        print(f"resumed from {output / CHECKPOINT_FILE} at meta-iteration {trainer.iteration}")
    print(f"{family!r} on {trainer.device}: {config.iterations} meta-iterations of {config.meta_batch_size} tasks "
          f"x {config.episodes_per_task} episodes -> {output}")
    start = time.perf_counter()
    history = trainer.train(progress=not args.no_progress)
    return trainer, history, time.perf_counter() - start


def plot_returns(history: list[dict], path: Path, title: str, paper: float | None = None,
                 paper_label: str = "paper") -> None:
    """Mean episode return of the meta-batch before and after the inner step, per meta-iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [m["iteration"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(its, [m["pre_return"] for m in history], label="before adaptation")
    ax.plot(its, [m["post_return"] for m in history], label="after 1 inner step")
    if paper is not None:
        ax.axhline(paper, color="k", ls="--", lw=0.8, label=paper_label)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def before_after(trainer: MAMLTrainer, num_tasks: int, adapt_episodes: int, eval_episodes: int, *,
                 split: str = "train", params: Any = None, seed: int | None = None) -> dict[str, Any]:
    """Held-out evaluation, Meta-World's protocol (``metaworld.evaluation``): per task,
    ``adapt_episodes`` rollouts of the meta-params, one inner step, then ``eval_episodes`` rollouts
    of the adapted policy. Tasks and rollouts come from an evaluation sampler seeded with ``seed``
    (default ``config.seed + 10_000``). Returns ``{"return_before", "return_after", "tasks"}`` and,
    when the sampler counts success, ``"success_before"`` / ``"success_after"`` (per task, per
    class, overall: ``envs.success_rates``)."""
    params = trainer.params if params is None else params
    seed = trainer.config.seed + 10_000 if seed is None else seed
    sampler = trainer.sampler.for_evaluation(seed)
    try:
        tasks = sampler.sample_tasks(num_tasks, None, split)
        before, info_before = trainer.sample(params, tasks, step=0, episodes_per_task=adapt_episodes, sampler=sampler)
        adapted = trainer.adapt_batch(params, trainer.inner_batch(before))
        after, info_after = trainer.sample(adapted, tasks, per_task=True, step=1, episodes_per_task=eval_episodes,
                                           sampler=sampler)
    finally:
        sampler.close()
    out: dict[str, Any] = {"tasks": len(tasks), "split": split, "adapt_episodes": adapt_episodes,
                           "eval_episodes": eval_episodes,
                           "return_before": float(before.rewards.sum(dim=1).mean()),
                           "return_after": float(after.rewards.sum(dim=1).mean())}
    if "success" in info_before:
        names = [getattr(t, "env_name", trainer.sampler.family.name) for t in tasks]
        out["success_before"] = success_rates(info_before["success"], names)
        out["success_after"] = success_rates(info_after["success"], names)
    return out


def evaluate_before_after(trainer: MAMLTrainer, args: GymMAMLArgs) -> tuple[dict, dict, float]:
    """Held-out return before and after one inner step for the best and the latest meta-params:
    ``(best, latest, seconds)``; prints the table."""
    start = time.perf_counter()
    best = before_after(trainer, args.eval_tasks, args.eval_episodes, args.eval_episodes, params=trainer.best_params)
    latest = before_after(trainer, args.eval_tasks, args.eval_episodes, args.eval_episodes)
    seconds = time.perf_counter() - start
    print(f"\nheld-out evaluation on {args.eval_tasks} tasks x {args.eval_episodes} episodes (mean episode return)")
    print(f"{'':>14} | {'before':>8} | {'after 1 step':>12}")
    print(f"{'best params':>14} | {best['return_before']:8.1f} | {best['return_after']:12.1f}")
    print(f"{'latest params':>14} | {latest['return_before']:8.1f} | {latest['return_after']:12.1f}")
    return best, latest, seconds
