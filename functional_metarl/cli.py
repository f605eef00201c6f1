"""The ``functional-metarl`` command line (also ``python -m functional_metarl``).

    functional-metarl list                                   # runners, task families, shipped configs
    functional-metarl train configs/maml_nav.yaml --output runs/nav --iterations 50 --trpo.max-kl 0.02
    functional-metarl train maml_nav_paper --output runs/paper   # a shipped config by name
    functional-metarl train configs/maml_nav.yaml --output runs/nav --resume
    functional-metarl evaluate runs/nav                      # the adaptation table from runs/nav/checkpoint.pt
    functional-metarl benchmark maml_nav_iteration -- --help # a script of benchmarks/

A config file is YAML: ``runner`` (a key of :data:`RUNNERS`), ``family`` (a key of
:data:`FAMILIES` that the runner takes), optional ``family_options`` (the family's constructor
settings, e.g. ``num_arms`` for bandits) and the runner config's own fields at the top level
(nested configs as mappings: ``trpo: {max_kl: 0.01}``). It is checked on load by
:func:`~functional_metarl.runners.configs.config_from_dict`: unknown keys, wrong types and
out-of-range values are refused with the key path, the value and what is allowed.

Overrides after the config file are flags derived from the runner's config dataclass by tyro
(``--iterations 5``, ``--trpo.max-kl 0.02``, ``--hidden 32 32``), the same derivation
``examples/maml_nav.py`` uses, so the command line and the examples spell a setting the same way,
``--help`` after the file lists every field with the file's value as its default, and nothing
re-lists a config's fields by hand. (``key=value`` pairs would need a second, hand-written
parser for types, tuples and nested keys; tyro already has one, checked against the annotations.)

``train`` writes ``run.yaml`` (the resolved config document) beside the runner's
``checkpoint.pt`` / ``metrics.json``; ``evaluate`` reads the runner class from the checkpoint and
the family from ``run.yaml`` (a run directory written by an example without ``run.yaml`` is
rebuilt with the runner's default family).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .runners import (
    CHECKPOINT_FILE,
    DDPGTrainer,
    DeepOptionCriticTrainer,
    MAMLAtariTrainer,
    MAMLTrainer,
    OptionCriticTrainer,
    RainbowTrainer,
    RL2Trainer,
    Runner,
    load_checkpoint_file,
)
from .runners.configs import config_from_dict, load_yaml

__all__ = ["RUNNERS", "FAMILIES", "RUN_FILE", "Family", "RunSpec", "load_run_spec", "build_runner", "shipped_configs", "main",
           "main_exit"]

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
BENCHMARK_DIR = ROOT / "benchmarks"
RUN_FILE = "run.yaml"
RESERVED = ("runner", "family", "family_options")

#: runner name in a config file -> runner class
RUNNERS: dict[str, type[Runner]] = {
    "maml": MAMLTrainer,
    "rl2": RL2Trainer,
    "rainbow": RainbowTrainer,
    "ddpg": DDPGTrainer,  # DDPG and TD3 (the config's ``algo``)
    "option_critic": OptionCriticTrainer,
    "deep_option_critic": DeepOptionCriticTrainer,
    "maml_atari": MAMLAtariTrainer,  # MAML-A2C on Atari flavours or games
}

PAPER_MAML_NAV = {"0": -40.4, "1": -11.7, "2": -3.3, "3": -3.2}


def _no_options(options: dict[str, Any]) -> dict[str, Any]:
    if options:
        raise ValueError(f"family_options: this family takes none, got {sorted(options)}")
    return {}


def _build_from_config(runner: str, config: Any, options: dict[str, Any]) -> dict[str, Any]:
    """A family the runner builds from its own config (``env_id``, ...): no constructor arguments, no options."""
    return _no_options(options)


@dataclass(frozen=True)
class Family:
    """A task family the CLI can build.

    Attributes:
        description: one line for ``list``.
        runners: the runner names that take it.
        config: config fields it implies (e.g. ``env: bandit`` for RL²); a config file that sets
            one of them to another value is refused.
        build: ``build(runner_name, config, options) -> constructor keyword arguments`` (a
            sampler, an ``env_fn``), ``options`` being the file's ``family_options``.
    """

    description: str
    runners: tuple[str, ...]
    config: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    build: Callable[[str, Any, dict[str, Any]], dict[str, Any]] = _build_from_config




def _navigation(runner: str, config: Any, options: dict[str, Any]) -> dict[str, Any]:
    from .envs import Navigation2D
    from .runners import PureFamilySampler

    env = _construct(Navigation2D, {"horizon": config.horizon, "action_scale": config.action_scale, **options})
    return {"sampler": PureFamilySampler(env)}


def _split_trial(kind: str) -> Callable[[str, Any, dict[str, Any]], dict[str, Any]]:
    def build(runner: str, config: Any, options: dict[str, Any]) -> dict[str, Any]:
        if runner == "rl2":
            return _no_options(options)
        from .envs import BernoulliBandits, TabularMDP
        from .runners import SplitTrialSampler

        num_pre = options.pop("num_pre", 0) if isinstance(options, dict) else 0
        env = _construct(BernoulliBandits if kind == "bandit" else TabularMDP, options)
        return {"sampler": SplitTrialSampler(env, num_pre=num_pre)}

    return build


def _simulator(name: str) -> Callable[[str, Any, dict[str, Any]], dict[str, Any]]:
    def build(runner: str, config: Any, options: dict[str, Any]) -> dict[str, Any]:
        from . import envs
        from .runners import SimulatorSampler

        options = dict(options)
        sampler_options = {k: options.pop(k) for k in ("vectorization", "action_scale") if k in options}
        success_key = None
        if name.startswith("MetaWorld"):
            family = _construct(envs.MetaWorldFamily, {"seed": config.seed, "horizon": config.horizon, **options})
            success_key = "success"
        else:
            family = _construct(getattr(envs, name), {"horizon": config.horizon, **options})
        return {"sampler": SimulatorSampler(family, seed=config.seed, success_key=success_key, **sampler_options)}

    return build


def _atari(runner: str, config: Any, options: dict[str, Any]) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np

    options = dict(options)
    max_frames = options.pop("max_frames", 108_000)
    _no_options(options)

    def thunk() -> Any:
        import ale_py

        gym.register_envs(ale_py)
        env = gym.make(config.env_id, frameskip=1, repeat_action_probability=0.0, full_action_space=False,
                       max_num_frames_per_episode=max_frames)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
        env = gym.wrappers.FrameStackObservation(env, 4)
        return gym.wrappers.TransformReward(env, lambda r: float(np.clip(r, -1.0, 1.0)))

    def env_fn(cfg: Any) -> Any:
        return gym.vector.SyncVectorEnv([thunk for _ in range(cfg.num_envs)],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    return {"env_fn": env_fn}


def _metaworld_gym(runner: str, config: Any, options: dict[str, Any]) -> dict[str, Any]:
    import gymnasium as gym

    _no_options(options)

    def env_fn(index: int) -> Any:
        import metaworld  # noqa: F401  (registers the Meta-World/ envs)

        return gym.make(config.env_id, **config.env_kwargs)

    return {"env_fn": env_fn}


def _construct(cls: type, options: dict[str, Any]) -> Any:
    try:
        return cls(**options)
    except TypeError as error:  # an unknown option
        raise ValueError(f"family_options: {cls.__name__} does not take these settings ({error})") from None


#: family name in a config file -> how to build it
FAMILIES: dict[str, Family] = {
    "navigation": Family("2D navigation (pure; MAML paper section 5.3)", ("maml",), build=_navigation),
    "bandit": Family("Bernoulli bandits (pure; RL², and MAML on split trials)", ("maml", "rl2"),
                     {"rl2": {"env": "bandit"}}, _split_trial("bandit")),
    "mdp": Family("random tabular MDPs (pure; RL², and MAML on split trials)", ("maml", "rl2"),
                  {"rl2": {"env": "mdp"}}, _split_trial("mdp")),
    "half_cheetah_vel": Family("MuJoCo half-cheetah goal velocity", ("maml",), build=_simulator("HalfCheetahVel")),
    "half_cheetah_dir": Family("MuJoCo half-cheetah direction", ("maml",), build=_simulator("HalfCheetahDir")),
    "ant_dir": Family("MuJoCo ant direction", ("maml",), build=_simulator("AntDir")),
    "metaworld": Family("Meta-World ML1 / ML10 (family_options: benchmark, env_name)", ("maml",),
                        build=_simulator("MetaWorld")),
    "cartpole": Family("gymnasium CartPole-v1", ("rainbow", "deep_option_critic"),
                       {"rainbow": {"env_id": "CartPole-v1"}, "deep_option_critic": {"env_id": "CartPole-v1"}}),
    "atari": Family("Atari through ALE (config env_id, e.g. ALE/Pong-v5)", ("rainbow",), build=_atari),
    "pendulum": Family("gymnasium Pendulum-v1", ("ddpg",), {"ddpg": {"env_id": "Pendulum-v1"}}),
    "half_cheetah": Family("MuJoCo HalfCheetah-v5", ("ddpg",), {"ddpg": {"env_id": "HalfCheetah-v5"}}),
    "four_rooms": Family("tabular Four Rooms (Sutton et al. 1999)", ("option_critic",)),
    "atari_tasks": Family("Atari flavours (game modes) or games as tasks (config: tasks, game, games)",
                          ("maml_atari",)),
    "metaworld_mt1": Family("a Meta-World MT1 env (config env_kwargs: env_name, seed)", ("deep_option_critic",),
                            {"deep_option_critic": {"env_id": "Meta-World/MT1"}}, _metaworld_gym),
}

DEFAULT_FAMILY = {"maml": "navigation", "rl2": "bandit", "rainbow": "cartpole", "ddpg": "pendulum",
                  "option_critic": "four_rooms", "deep_option_critic": "cartpole", "maml_atari": "atari_tasks"}


# ============================================================================ config documents
@dataclass
class RunSpec:
    """A checked config document: the runner, the family, its options and the runner's config."""

    runner: str
    family: str
    family_options: dict[str, Any]
    config: Any

    def to_dict(self) -> dict[str, Any]:
        """The document as ``run.yaml`` holds it (config fields at the top level)."""
        out: dict[str, Any] = {"runner": self.runner, "family": self.family}
        if self.family_options:
            out["family_options"] = dict(self.family_options)
        return {**out, **self.config.to_dict()}


def load_run_spec(document: dict[str, Any] | str | Path) -> RunSpec:
    """A :class:`RunSpec` from a config mapping or a YAML file, checked (see the module docstring).

    Args:
        document: the mapping, or the path of a YAML file holding it.

    Raises:
        ValueError: a missing or unknown ``runner`` / ``family``, a family the runner does not
            take, a config field that contradicts the family, an unknown key, an out-of-range value.
        TypeError: a value of the wrong type.
    """
    if isinstance(document, (str, Path)):
        document = load_yaml(document)
    if not isinstance(document, dict):
        raise TypeError(f"a config document must be a mapping, got {type(document).__name__}")
    values = dict(document)
    runner = values.pop("runner", None)
    if runner not in RUNNERS:
        raise ValueError(f"config key 'runner' = {runner!r}: expected one of {sorted(RUNNERS)}")
    family = values.pop("family", DEFAULT_FAMILY[runner])
    if family not in FAMILIES:
        raise ValueError(f"config key 'family' = {family!r}: expected one of {sorted(FAMILIES)}")
    takes = sorted(f for f, spec in FAMILIES.items() if runner in spec.runners)
    if runner not in FAMILIES[family].runners:
        raise ValueError(f"config key 'family' = {family!r}: runner {runner!r} takes the families {takes}")
    options = values.pop("family_options", None) or {}
    if not isinstance(options, dict):
        raise TypeError(f"config key 'family_options' must be a mapping, got {options!r}")
    for key, implied in FAMILIES[family].config.get(runner, {}).items():
        if values.setdefault(key, implied) != implied:
            raise ValueError(f"config key {key!r} = {values[key]!r}: family {family!r} needs {implied!r}")
    config = config_from_dict(RUNNERS[runner].config_class, values)
    return RunSpec(runner, family, dict(options), config)


def build_runner(spec: RunSpec, output_dir: str | Path | None = None) -> Runner:
    """The runner ``spec`` names, on its family, writing to ``output_dir`` (``None``: nothing)."""
    kwargs = FAMILIES[spec.family].build(spec.runner, spec.config, dict(spec.family_options))
    return RUNNERS[spec.runner](spec.config, output_dir=output_dir, **kwargs)


def shipped_configs() -> dict[str, Path]:
    """The YAML configs under ``configs/`` by name (file stem)."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))} if CONFIG_DIR.is_dir() else {}


# ============================================================================ commands
def _usage_error(message: str) -> NoReturn:
    print(f"functional-metarl: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _config_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    if name in shipped:
        return shipped[name]
    _usage_error(f"no config file {name!r} (and no shipped config of that name; shipped: {sorted(shipped)})")


def _apply_overrides(spec: RunSpec, overrides: Sequence[str], prog: str) -> RunSpec:
    """The tyro-derived flags of the runner's config, defaults taken from the file, then checked again."""
    if not overrides:
        return spec
    import tyro

    cls = RUNNERS[spec.runner].config_class
    config = tyro.cli(cls, default=spec.config, args=list(overrides), prog=prog,
                      description=f"{cls.__name__} overrides (defaults: the config file's values)")
    # Checked again key by key, so every route into a config meets the same messages.
    return dataclasses.replace(spec, config=config_from_dict(cls, config.to_dict()))


def cmd_train(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """``train CONFIG [overrides]``: build the runner, train it (resuming with --resume), evaluate."""
    path = _config_path(args.config)
    try:
        spec = load_run_spec(path)
    except (TypeError, ValueError, FileNotFoundError) as error:
        _usage_error(f"{path}: {error}")
    output = Path(args.output) if args.output else Path("runs") / path.stem
    checkpoint = output / CHECKPOINT_FILE
    if args.resume and (output / RUN_FILE).is_file():
        # Resume the run as it was started (its run.yaml: the file plus its overrides); flags
        # given now override that (e.g. a longer --iterations).
        try:
            started = load_run_spec(output / RUN_FILE)
        except (TypeError, ValueError) as error:
            _usage_error(f"{output / RUN_FILE}: {error}")
        if (started.runner, started.family) != (spec.runner, spec.family):
            _usage_error(f"--resume: {output} holds a {started.runner} run on {started.family}, but {path} names "
                         f"{spec.runner} on {spec.family}")
        spec = started
    spec = _apply_overrides(spec, overrides, prog=f"functional-metarl train {args.config}")
    if args.resume and not checkpoint.is_file():
        _usage_error(f"--resume: no checkpoint at {checkpoint}")
    if not args.resume and not args.overwrite and checkpoint.is_file():
        _usage_error(f"{output} already holds a run (checkpoint.pt); pass --resume to continue it or --overwrite "
                     "to start again over it")
    try:
        runner = build_runner(spec, output)
    except (TypeError, ValueError) as error:
        _usage_error(str(error))
    with runner:
        if args.resume:
            try:
                runner.load_checkpoint(checkpoint)
            except ValueError as error:
                _usage_error(str(error))
            print(f"resumed from {checkpoint} at iteration {runner.iteration}")
        runner.overwrite = args.overwrite
        try:
            runner.check_output_dir()  # a run of other settings: refused before anything is written
        except FileExistsError as error:
            _usage_error(str(error))
        output.mkdir(parents=True, exist_ok=True)
        (output / RUN_FILE).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
        print(f"{type(runner).__name__} on {spec.family} ({runner.device}): {spec.config.iterations} iterations "
              f"-> {output}")
        runner.train(progress=not args.no_progress)
        print(f"trained to iteration {runner.iteration}; evaluate with: functional-metarl evaluate {output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate RUN_DIR``: rebuild the runner from its checkpoint, evaluate, print and record the result."""
    run_dir = Path(args.run_dir)
    checkpoint = run_dir / CHECKPOINT_FILE
    try:
        state = load_checkpoint_file(checkpoint)
    except (FileNotFoundError, ValueError) as error:
        _usage_error(str(error))
    by_class = {cls.__name__: name for name, cls in RUNNERS.items()}
    runner_name = by_class.get(state.get("runner"))
    if runner_name is None:
        _usage_error(f"{checkpoint} was written by {state.get('runner')!r}, which the CLI does not know "
                     f"(it knows {sorted(by_class)})")
    run_file = run_dir / RUN_FILE
    try:
        if run_file.is_file():
            spec = load_run_spec(load_yaml(run_file))
        else:  # a run of an example script: the family its config implies, else the runner's default
            spec = load_run_spec({"runner": runner_name, "family": _implied_family(runner_name, state["config"]),
                                  **state["config"]})
        spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, device=args.device))
        if spec.runner != runner_name:
            _usage_error(f"{run_file} names runner {spec.runner!r} but the checkpoint was written by {state['runner']!r}")
        kwargs = FAMILIES[spec.family].build(spec.runner, spec.config, dict(spec.family_options))
        runner = RUNNERS[spec.runner].from_checkpoint(checkpoint, device=args.device, output_dir=run_dir, **kwargs)
    except (TypeError, ValueError) as error:
        _usage_error(str(error))
    with runner:
        if isinstance(runner, MAMLTrainer):
            result = _evaluate_maml(runner, spec, args, run_dir)
        else:
            result = runner.evaluate()
            width = max(len(k) for k in result) if result else 0
            print(f"{type(runner).__name__} at iteration {runner.iteration}: evaluation")
            for key, value in result.items():
                print(f"{key:>{width}} | {value:.4g}" if isinstance(value, float) else f"{key:>{width}} | {value}")
        runner.write_metrics(evaluation=result)
    print(json.dumps({"eval": result}))
    return 0


def _implied_family(runner: str, config: dict[str, Any]) -> str:
    """The family whose implied config fields ``config`` holds (``env: mdp`` -> ``mdp``), else the default."""
    for name, family in FAMILIES.items():
        implied = family.config.get(runner)
        if implied and all(config.get(k) == v for k, v in implied.items()):
            return name
    return DEFAULT_FAMILY[runner]


def _evaluate_maml(trainer: MAMLTrainer, spec: RunSpec, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """maml_nav's protocol: held-out tasks after 0..max_steps inner steps, best and latest params."""
    fixed = trainer.sampler.fixed_inner_steps
    max_steps = args.max_steps if fixed is None else min(args.max_steps, fixed)
    common = dict(num_tasks=args.eval_tasks, max_steps=max_steps, episodes_per_task=args.eval_episodes,
                  inner_lrs=args.eval_lrs)
    best, evaluation = trainer.evaluate_with_episodes(params=trainer.best_params, learned_lrs=trainer.best_learned_lrs,
                                                      **common)
    latest, _ = trainer.evaluate_with_episodes(**common)
    paper = PAPER_MAML_NAV if spec.family == "navigation" else {}
    print(f"held-out evaluation on {args.eval_tasks} tasks x {args.eval_episodes} episodes (mean episode return), "
          f"{type(trainer).__name__} at iteration {trainer.iteration}")
    success = "success_0" in best  # Meta-World: the success rate beside the return
    print(f"{'inner steps':>12} | {'best params':>11} | {'latest':>8}" + (f" | {'MAML paper':>10}" if paper else "")
          + (f" | {'success best':>12} | {'success latest':>14}" if success else ""))
    for step in range(max_steps + 1):
        k = str(step)
        row = f"{k:>12} | {best[k]:11.2f} | {latest[k]:8.2f}" + (f" | {paper[k]:10.1f}" if k in paper else "")
        if success:
            row += f" | {best[f'success_{k}']:12.1%} | {latest[f'success_{k}']:14.1%}"
        print(row)
    if trainer.history:
        _plot_returns(trainer.history, run_dir / "returns.png")  # training returns per meta-iteration
    if spec.family == "navigation":
        _plot_paths(evaluation, run_dir / "trajectories.png")
    return {"best": best, "final": latest}


def _plot_returns(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [m["iteration"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("pre_return", "before adaptation"), ("post_return", "after the inner steps")):
        ax.plot(its, [m.get(key, math.nan) for m in history], label=label)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean episode return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_paths(evaluation: Any, path: Path, num_goals: int = 4) -> None:
    """2D navigation: the first episode's path for a few goals, before and after each inner step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    goals = evaluation.tasks.goal.cpu()
    num_goals = min(num_goals, goals.shape[0])
    fig, axes = plt.subplots(1, num_goals, figsize=(3.2 * num_goals, 3.4), squeeze=False)
    colors = plt.get_cmap("viridis")
    last = max(len(evaluation.episodes) - 1, 1)
    for i, ax in enumerate(axes[0]):
        for step, episodes in enumerate(evaluation.episodes):
            obs, mask = episodes.obs[i, :, 0].cpu(), episodes.mask[i, :, 0].cpu().bool()
            ax.plot(obs[mask][:, 0], obs[mask][:, 1], color=colors(step / last), lw=1.2,
                    label="before" if step == 0 else f"{step} step{'s' if step > 1 else ''}")
        ax.scatter([0], [0], c="k", marker="o", s=20)
        ax.scatter([goals[i, 0]], [goals[i, 1]], c="tab:red", marker="*", s=120, label="goal")
        ax.set_aspect("equal")
        ax.set_title(f"goal {i}")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_list(args: argparse.Namespace) -> int:
    """``list``: runners with their families, families, shipped configs."""
    print("runners (config key 'runner'):")
    for name, cls in RUNNERS.items():
        takes = ", ".join(f for f, spec in FAMILIES.items() if name in spec.runners)
        print(f"  {name:<19} {cls.__name__} ({cls.config_class.__name__}); families: {takes}")
    print("task families (config key 'family'):")
    for name, family in FAMILIES.items():
        print(f"  {name:<19} {family.description}")
    print(f"shipped configs ({CONFIG_DIR}):")
    for name, path in shipped_configs().items():
        try:
            doc = load_yaml(path)
            print(f"  {name:<26} runner {doc.get('runner')}, family {doc.get('family')}")
        except ValueError as error:
            print(f"  {name:<26} unreadable: {error}")
    return 0


def cmd_benchmark(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """``benchmark NAME [args]``: run ``benchmarks/NAME.py`` with this Python; its exit status."""
    available = sorted(p.stem for p in BENCHMARK_DIR.glob("*.py") if not p.stem.startswith("_"))
    if args.name not in available:
        _usage_error(f"no benchmark {args.name!r}; available: {available}")
    rest = list(rest[1:]) if rest and rest[0] == "--" else list(rest)
    return subprocess.call([sys.executable, str(BENCHMARK_DIR / f"{args.name}.py"), *rest])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="functional-metarl", allow_abbrev=False,
                                     description="Train, evaluate and list functional_metarl runs from YAML configs.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", allow_abbrev=False, help="train from a YAML config (then flags overriding it)",
                           description="Train from CONFIG; further --flags override its fields (tyro-derived from "
                                       "the runner's config; `train CONFIG --help` lists them).")
    train.add_argument("config", help="a YAML file, or the name of a shipped config (see `list`)")
    train.add_argument("--output", default=None, help="run directory (default runs/<config name>)")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    train.add_argument("--overwrite", action="store_true", help="start again over a run directory that holds a run")
    train.add_argument("--no-progress", action="store_true")
    evaluate = sub.add_parser("evaluate", help="evaluate RUN_DIR/checkpoint.pt (MAML: the adaptation table)")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--eval-tasks", type=int, default=40, help="MAML: held-out tasks")
    evaluate.add_argument("--eval-episodes", type=int, default=40, help="MAML: episodes per task and step")
    evaluate.add_argument("--max-steps", type=int, default=3, help="MAML: inner steps evaluated")
    evaluate.add_argument("--eval-lrs", type=float, nargs="+", default=None,
                          help="MAML: step size of step k = EVAL_LRS[min(k, len-1)] (default inner_lr, inner_lr/10)")
    sub.add_parser("list", help="runners, task families and shipped configs")
    bench = sub.add_parser("benchmark", help="run benchmarks/NAME.py (further arguments go to it)")
    bench.add_argument("name")
    parser.train_help = train.format_help()  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (usage errors exit with status 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv and argv[0] == "train":
        wants_help = any(a in ("-h", "--help") for a in argv[1:])
        positional = [a for a in argv[1:] if not a.startswith("-")]
        if wants_help and positional and (Path(positional[0]).is_file() or positional[0] in shipped_configs()):
            # `train CONFIG --help`: the command's own flags, then the config's fields (tyro).
            print(parser.train_help, end="\n")  # type: ignore[attr-defined]
            args, rest = parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])
            return cmd_train(args, [*rest, "--help"])
        args, rest = parser.parse_known_args(argv)
        return cmd_train(args, rest)
    if argv and argv[0] == "benchmark" and len(argv) >= 2:
        return cmd_benchmark(parser.parse_args(argv[:2]), argv[2:])
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        for name in ("eval_tasks", "eval_episodes"):
            if args.__dict__[name] <= 0:
                _usage_error(f"--{name.replace('_', '-')} must be a positive int, got {args.__dict__[name]}")
        if args.max_steps < 0:
            _usage_error(f"--max-steps must be a non-negative int, got {args.max_steps}")
        if args.eval_lrs is not None and not all(lr > 0 and math.isfinite(lr) for lr in args.eval_lrs):
            _usage_error(f"--eval-lrs must be positive finite step sizes, got {args.eval_lrs}")
        return cmd_evaluate(args)
    if args.command == "list":
        return cmd_list(args)
    return cmd_benchmark(args, [])


def main_exit() -> NoReturn:
    """The console script's entry point: :func:`main`, then exit with its status."""
    raise SystemExit(main())
