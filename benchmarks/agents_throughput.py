"""Training throughput of every RL example: env steps per second and gradient updates per second.

    python benchmarks/agents_throughput.py                  # every agent, 5 timed blocks (~4 min on 2 busy cores)
    python benchmarks/agents_throughput.py --quick          # 3 short blocks, shorter warm-up (~40 s)
    python benchmarks/agents_throughput.py --threads 2 --agents rainbow_cartpole td3_pendulum
    python benchmarks/agents_throughput.py --json /tmp/agents_throughput.json
    python benchmarks/agents_throughput.py --agents ddpg_pendulum ddpg_pendulum_compile td3_pendulum td3_pendulum_compile td3_pendulum_4envs

DDPG / TD3 rows (issue 27): ``ddpg_pendulum`` / ``td3_pendulum`` run the update eagerly (the
reference), ``*_compile`` the same settings with ``compile=True`` (the whole update under
``torch.compile``; its compilation happens in the warm-up steps with updates and is reported
apart, as ``compile warm-up`` / ``warm_updates_s``), ``td3_pendulum_4envs`` with ``num_envs=4``
(one vector-env step per iteration, still one update per env step). They run one after the
other in one invocation: compare them within a run.

Each agent is the runner its example builds, with the example's default settings (the config
values are restated below, next to each agent; the Atari env factory is the example's own
``make_atari_env``). Only the length of training differs: the runner is driven through its own
training loop (``trainer.train()`` with ``config.iterations`` moved forward, or
``trainer.step()`` for the tabular Option-Critic, whose iteration is a whole episode) for

1. a warm-up that runs past the learning-starts phase (random or network-driven acting into the
   replay buffer, no gradient updates) plus a few steps with updates, so that buffers, caches
   and allocator pools are warm. The acting-only rate of the learning-starts phase is reported
   as "warm-up steps/s", without its first 50 steps, which hold one-time costs (the replay's
   allocation on its first add) and are timed apart (``first_steps_s`` in the JSON). ``--quick``
   cuts the learning-starts phase to 500 steps: that only changes how full the replay is;
2. ``--repeats`` timed blocks of ``--steps`` runner steps each (``time.perf_counter`` around
   the loop, a CUDA sync at the end when the runner is on a GPU).

The table reports, per agent, the median over the blocks of env steps/s and gradient
updates/s, and the spread (min-max) of the env-step rate. Definitions:

- env steps: transitions collected, summed over parallel envs / learners (the tabular
  Option-Critic steps its 10 independent learners side by side: one ``step()`` = 10 env steps);
- updates: optimizer steps of the learner: Rainbow's ``updates``, DDPG/TD3's critic updates
  (TD3 updates the actor and targets on every 2nd one), Option-Critic's SGD steps (one vmapped
  step over all learners per ``step()``).

Left out on purpose: periodic evaluation (``eval_every=0``; the CartPole example evaluates every
5,000 steps), checkpoints and logs (no ``output_dir``), and the progress bar.
Agents whose simulator is not installed (ale-py, MuJoCo) are skipped with the reason printed.

Threads and OpenMP: ``--threads`` (default 1, the examples' default) sets torch's intra-op
threads. The examples set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it; so does
this script (``--omp-wait-policy`` to change it), because OpenMP's spinning wait is very slow on
a shared machine.

Results go to ``--json`` (default benchmarks/results/agents_throughput.json) with the torch
version, the threads, the device, the load average and the date. On a shared machine read the
medians, and compare rows of one run rather than runs taken under different loads.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import configure_openmp  # benchmarks/_common.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Budget:
    """Timed steps per block and blocks per agent; ``steps`` may be overridden per agent."""

    repeats: int
    steps: dict[str, int]
    warm_updates: int  # steps with updates after the learning-starts phase, before timing


# Runner steps per timed block (env steps, except the tabular Option-Critic: one step = its 10
# learners' env steps), chosen so that one block takes roughly 2-8 s on one busy core.
FULL = Budget(repeats=5, warm_updates=20, steps={
    "rainbow_cartpole": 400, "rainbow_atari": 50, "ddpg_pendulum": 300, "td3_pendulum": 300,
    "ddpg_pendulum_compile": 300, "td3_pendulum_compile": 300, "td3_pendulum_4envs": 75,
    "td3_halfcheetah": 300, "option_critic_fourrooms": 600, "option_critic_cartpole": 300,
    "rainbow_cartpole_compile": 400, "rainbow_dqn_cartpole": 2000, "rainbow_dqn_cartpole_compile": 2000,
})
QUICK = Budget(repeats=3, warm_updates=5, steps={
    "rainbow_cartpole": 100, "rainbow_atari": 15, "ddpg_pendulum": 100, "td3_pendulum": 100,
    "ddpg_pendulum_compile": 100, "td3_pendulum_compile": 100, "td3_pendulum_4envs": 25,
    "td3_halfcheetah": 100, "option_critic_fourrooms": 150, "option_critic_cartpole": 100,
    "rainbow_cartpole_compile": 100, "rainbow_dqn_cartpole": 500, "rainbow_dqn_cartpole_compile": 500,
})
# --quick shortens the learning-starts phase (Rainbow's learning_starts, DDPG/TD3's start_steps)
# to at most this many env steps: it only changes how full the replay is when timing starts.
QUICK_LEARNING_STARTS = 500
# The first steps of the learning-starts phase are timed apart ("first steps" in the JSON): they
# hold one-time costs such as the replay buffer's allocation on its first add.
FIRST_STEPS = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"3 short timed blocks per agent, learning-starts phase cut to {QUICK_LEARNING_STARTS} "
                             "steps (~1 min in all)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as the examples)")
    parser.add_argument("--agents", nargs="+", default=None, metavar="NAME",
                        help=f"a subset of the agents (default all: {' '.join(AGENT_NAMES)})")
    parser.add_argument("--steps", type=int, default=None,
                        help="runner steps per timed block for every agent (default: per agent, see FULL / QUICK)")
    parser.add_argument("--repeats", type=int, default=None, help="timed blocks per agent (default 5; --quick: 3)")
    parser.add_argument("--device", default="auto", help="runner device (default auto, as the examples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "agents_throughput.json"),
                        help="where to write the results (default benchmarks/results/agents_throughput.json)")
    parser.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default=None,
                        help="OMP_WAIT_POLICY to set before torch loads (default: the environment's, else PASSIVE "
                             "as the examples)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    unknown = sorted(set(args.agents or ()) - set(AGENT_NAMES))
    if unknown:
        parser.error(f"unknown agent(s) {unknown}; choose from {AGENT_NAMES}")
    return args


AGENT_NAMES = ("rainbow_cartpole", "rainbow_atari", "ddpg_pendulum", "td3_pendulum", "ddpg_pendulum_compile",
               "td3_pendulum_compile", "td3_pendulum_4envs", "td3_halfcheetah",
               "option_critic_fourrooms", "option_critic_cartpole",
               "rainbow_cartpole_compile", "rainbow_dqn_cartpole", "rainbow_dqn_cartpole_compile")

if __name__ == "__main__":
    _ARGS = parse_args()
    _OMP_POLICY = configure_openmp(_ARGS.omp_wait_policy, default="passive")  # what the examples set

import torch  # noqa: E402

from functional_metarl.runners import (  # noqa: E402
    DDPGConfig,
    DDPGTrainer,
    DeepOptionCriticConfig,
    DeepOptionCriticTrainer,
    OptionCriticConfig,
    OptionCriticTrainer,
    RainbowConfig,
    RainbowTrainer,
)


class Skip(Exception):
    """The agent cannot run here (a simulator or runner is missing); the message says why."""


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} not installed ({install})")


def _load_example(name: str):
    """Import ``examples/<name>.py`` as a module (its ``main()`` is not run)."""
    path = ROOT / "examples" / f"{name}.py"
    if not path.is_file():
        raise Skip(f"{path.relative_to(ROOT)} not found")
    spec = importlib.util.spec_from_file_location(f"_bench_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------- harnesses
class Harness:
    """Drives one runner: ``advance(n)`` runs ``n`` more env steps of its training loop.

    Subclasses set ``learning_starts`` (env steps without updates) and the counters.
    """

    learning_starts: int = 0
    steps_per_call: int = 1  # env steps per unit of ``advance`` (parallel envs / learners)

    def advance(self, n: int) -> None:
        raise NotImplementedError

    @property
    def env_steps(self) -> int:
        raise NotImplementedError

    @property
    def updates(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class IterationsHarness(Harness):
    """A runner whose iteration is one (vector-)env step (Rainbow, DDPG/TD3): each call moves
    ``config.iterations`` ``n`` iterations past the runner's counter, trains, and puts the
    budget back.

    (Rainbow anneals ``beta`` over the run's env steps, so during timing it sits near 1 instead
    of on the example's schedule; that changes the importance weights' values, not the work.)
    """

    def __init__(self, trainer, step_counter: str, update_counter: str, steps_per_call: int, close) -> None:
        self.trainer = trainer
        # DDPG's config reads an unset learning_starts as start_steps (its first_update).
        self.learning_starts = getattr(trainer.config, "first_update", trainer.config.learning_starts)
        self.steps_per_call = steps_per_call
        self._step_counter, self._update_counter, self._close = step_counter, update_counter, close

    def advance(self, n: int) -> None:
        cfg = self.trainer.config
        planned = cfg.iterations
        cfg.iterations = self.trainer.iteration + n
        try:
            self.trainer.train(progress=False)
        finally:
            cfg.iterations = planned

    @property
    def env_steps(self) -> int:
        return getattr(self.trainer, self._step_counter)

    @property
    def updates(self) -> int:
        return getattr(self.trainer, self._update_counter)

    def close(self) -> None:
        self._close()


class _RainbowHarness(IterationsHarness):
    """Rainbow's: once learning has started, a call runs until at least ``WARM_RAINBOW_UPDATES``
    updates were made in all, so that the warm-up with updates holds some even when updates are
    sparse (``train_every=10``), and compile=True compiles there, not in a timed block."""

    WARM_RAINBOW_UPDATES = 3

    def advance(self, n: int) -> None:
        super().advance(n)
        while self.env_steps > self.learning_starts and self.updates < self.WARM_RAINBOW_UPDATES:
            super().advance(1)


def RainbowHarness(trainer: RainbowTrainer) -> IterationsHarness:  # noqa: N802 (reads as a class)
    return _RainbowHarness(trainer, "step", "updates", trainer.config.num_envs, trainer.close)


def DDPGHarness(trainer: DDPGTrainer) -> IterationsHarness:  # noqa: N802
    return IterationsHarness(trainer, "steps", "critic_updates", trainer.config.num_envs, trainer.close)


class OptionCriticHarness(Harness):
    """``OptionCriticTrainer.step()`` ``n`` times: the body of its iteration (which runs until
    every learner has finished one more episode and cannot stop at a step count).
    Every call steps all ``num_runs`` learners and makes one vmapped SGD step over them."""

    def __init__(self, trainer: OptionCriticTrainer):
        self.trainer = trainer
        self.steps_per_call = trainer.config.num_runs

    def advance(self, n: int) -> None:
        for _ in range(n):
            self.trainer.step()

    @property
    def env_steps(self) -> int:
        return self.trainer.steps * self.trainer.config.num_runs

    @property
    def updates(self) -> int:
        return self.trainer.steps


# --------------------------------------------------------------------------------------- agents
# Each builder restates its example's default settings (the command-line defaults of that
# example, without --out / --resume); keep them in step with the example.
def _starts(default: int, args) -> int:
    """The example's learning-starts length, cut to QUICK_LEARNING_STARTS under --quick."""
    return min(default, QUICK_LEARNING_STARTS) if args.quick else default


def build_rainbow_cartpole(args, compile: bool = False) -> tuple[Harness, dict]:
    # examples/rainbow_cartpole.py: --iterations 30000 --n-step 3 --lr 1e-3, all six components on.
    config = RainbowConfig(iterations=30_000, seed=args.seed, n_step=3, lr=1e-3, device=args.device,
                           learning_starts=_starts(RainbowConfig.learning_starts, args),
                           eval_every=0,  # the example evaluates every 5,000 steps; not training work
                           double=True, prioritized=True, dueling=True, distributional=True, noisy=True,
                           compile=compile)
    return RainbowHarness(RainbowTrainer(config)), {"env": config.env_id + (" compile=True" if compile else "")}


def build_rainbow_cartpole_compile(args) -> tuple[Harness, dict]:
    return build_rainbow_cartpole(args, compile=True)


# CleanRL's dqn.py defaults (CartPole-v1, 500k steps), as RainbowConfig fields: Rainbow's parts off
# (no C51, noisy nets, dueling, prioritized replay or double Q; n = 1; eps-greedy from 1 to 0.05
# over half the run), Q-net 4-120-84-2 ReLU, batch 128, an update every 10 env steps, hard target
# copy every 500 (tau 1), Adam lr 2.5e-4 eps 1e-8, no gradient clipping, gamma 0.99, buffer 10k,
# learning starts 10k, one env. The loss: 0.5 td^2 (huber_delta=None; CleanRL's MSE is td^2, the
# same work). Also benchmarks/agents_vs_cleanrl.py's "ours" for its DQN row.
RAINBOW_DQN_CARTPOLE = dict(
    env_id="CartPole-v1", iterations=500_000, num_envs=1, double=False, prioritized=False, dueling=False,
    distributional=False, noisy=False, n_step=1, hidden=(120,), head_hidden=84, batch_size=128, train_every=10,
    target_update=500, lr=2.5e-4, adam_eps=1e-8, max_grad_norm=None, gamma=0.99, buffer_size=10_000,
    learning_starts=10_000, eps_start=1.0, eps_end=0.05, eps_decay_steps=250_000, huber_delta=None, eval_every=0,
)


def build_rainbow_dqn_cartpole(args, compile: bool = False) -> tuple[Harness, dict]:
    config = RainbowConfig(**{**RAINBOW_DQN_CARTPOLE, "learning_starts": _starts(10_000, args)}, seed=args.seed,
                           device=args.device, compile=compile)
    return RainbowHarness(RainbowTrainer(config)), {"env": "CartPole-v1 CleanRL DQN" + (" compile=True" if compile else "")}


def build_rainbow_dqn_cartpole_compile(args) -> tuple[Harness, dict]:
    return build_rainbow_dqn_cartpole(args, compile=True)


def atari_replay_bytes(capacity: int = 10_000, episode: int = 500) -> dict:
    """Bytes per transition of the Rainbow runner's Atari replay (FrameStackReplay, 4 x 84 x 84
    uint8, prioritized, n = 20 as the example), filled past its capacity with ``episode``-step
    episodes; against a buffer of obs and next_obs stacks (2 x 4 x 84 x 84 bytes of frames)."""
    from functional_metarl.runners.replay import FrameStackReplay

    replay = FrameStackReplay(capacity, (4, 84, 84), 1, prioritized=True, n_step=20, num_actions=6)
    stack = torch.zeros((1, 4, 84, 84), dtype=torch.uint8)
    ids = replay.begin(stack)
    for t in range(capacity + episode):
        stack = torch.cat([stack[:, 1:], torch.full((1, 1, 84, 84), t % 251, dtype=torch.uint8)], dim=1)
        next_ids = replay.extend(stack)
        replay.add(ids, torch.zeros(1, dtype=torch.int64), torch.zeros(1), next_ids, torch.zeros(1), check=False)
        ids = next_ids
        if t % episode == episode - 1:
            stack = torch.zeros((1, 4, 84, 84), dtype=torch.uint8)
            ids = replay.begin(stack)
    return {"capacity": capacity, "episode_steps": episode, "bytes_per_transition": replay.bytes_per_transition(),
            "naive_frame_bytes_per_transition": 2 * 4 * 84 * 84}


def build_rainbow_atari(args) -> tuple[Harness, dict]:
    # examples/rainbow_atari.py: Pong, Data-efficient Rainbow settings (its default, not --paper).
    _require("ale_py", 'pip install ale-py, or ".[atari]"')
    example = _load_example("rainbow_atari")
    if not hasattr(example, "make_atari_env"):
        raise Skip("examples/rainbow_atari.py no longer defines make_atari_env; update this benchmark")
    game = "Pong"
    config = RainbowConfig(
        env_id=f"ALE/{game}-v5", iterations=100_000, buffer_size=30_000, seed=args.seed, device=args.device,
        gamma=0.99, v_min=-10.0, v_max=10.0, num_atoms=51, batch_size=32, adam_eps=1.5e-4, alpha=0.5, beta0=0.4,
        max_grad_norm=10.0, checkpoint_every=10_000, log_every=1_000,
        double=True, prioritized=True, dueling=True, distributional=True, noisy=True,
        network="data_efficient_cnn", n_step=20, lr=1e-4, sigma0=0.1, target_update=2_000,
        learning_starts=_starts(1_600, args), train_every=1, eps_decay_steps=2_500, eps_end=0.01,
    )
    trainer = RainbowTrainer(config, env_fn=example.make_atari_env(game))
    return RainbowHarness(trainer), {"env": config.env_id}


def _pendulum(algo: str, args, **fast) -> tuple[Harness, dict]:
    # examples/ddpg_pendulum.py: --iterations 20000 --start-steps 5000 --batch-size 100 --gamma 0.98,
    # buffer 200k, checkpoint every 5,000 (nothing is written here: no output_dir). ``fast``: the
    # issue-27 settings of the extra rows (compile=True, num_envs=4).
    config = DDPGConfig(algo=algo, start_steps=_starts(5_000, args), batch_size=100, env_id="Pendulum-v1", iterations=20_000,
                        gamma=0.98, buffer_size=200_000, seed=args.seed, device=args.device, checkpoint_every=5_000, **fast)
    info = {"env": config.env_id + "".join(f" {k}={v}" for k, v in fast.items())}
    return DDPGHarness(DDPGTrainer(config)), info


def build_ddpg_pendulum(args) -> tuple[Harness, dict]:
    return _pendulum("ddpg", args)


def build_td3_pendulum(args) -> tuple[Harness, dict]:
    return _pendulum("td3", args)


def build_ddpg_pendulum_compile(args) -> tuple[Harness, dict]:
    return _pendulum("ddpg", args, compile=True)


def build_td3_pendulum_compile(args) -> tuple[Harness, dict]:
    return _pendulum("td3", args, compile=True)


def build_td3_pendulum_4envs(args) -> tuple[Harness, dict]:
    return _pendulum("td3", args, num_envs=4)


def build_td3_halfcheetah(args) -> tuple[Harness, dict]:
    # examples/td3_halfcheetah.py: TD3, 1M steps (the replay is sized by them), 10,000 warm-up steps.
    _require("mujoco", 'pip install "gymnasium[mujoco]"')
    import gymnasium as gym

    env_id = "HalfCheetah-v5"
    config = DDPGConfig(algo="td3", env_id=env_id, iterations=1_000_000, start_steps=_starts(10_000, args),
                        seed=args.seed,
                        device=args.device, checkpoint_every=50_000)
    return DDPGHarness(DDPGTrainer(config, env=gym.make(env_id))), {"env": env_id}


def build_option_critic_fourrooms(args) -> tuple[Harness, dict]:
    # examples/option_critic_fourrooms.py: 10 runs x 2000 episodes, 4 options, goal moves at 1000.
    config = OptionCriticConfig(num_options=4, num_runs=10, iterations=2000, switch_goal_at=1000, xi=0.0,
                                entropy_coef=0.0, seed=args.seed)
    return OptionCriticHarness(OptionCriticTrainer(config)), {"env": "FourRooms (tabular, 10 learners)"}


class EnvStepHarness(Harness):
    """A runner with a public one-step method (deep Option-Critic's ``env_step``): call it ``n``
    times; each call steps every env still in the current round."""

    def __init__(self, trainer: DeepOptionCriticTrainer):
        self.trainer = trainer
        self.learning_starts = trainer.config.learning_starts
        self.steps_per_call = trainer.config.num_envs

    def advance(self, n: int) -> None:
        for _ in range(n):
            self.trainer.env_step()

    @property
    def env_steps(self) -> int:
        return self.trainer.steps

    @property
    def updates(self) -> int:
        return self.trainer.updates

    def close(self) -> None:
        self.trainer.close()


def build_option_critic_cartpole(args) -> tuple[Harness, dict]:
    # examples/option_critic_cartpole.py: the DeepOptionCriticConfig defaults (CartPole-v1).
    defaults = DeepOptionCriticConfig()
    config = DeepOptionCriticConfig(seed=args.seed, device=args.device,
                                    learning_starts=_starts(defaults.learning_starts, args))
    return EnvStepHarness(DeepOptionCriticTrainer(config)), {"env": config.env_id}


BUILDERS: dict[str, tuple[str, Callable]] = {
    "rainbow_cartpole": ("examples/rainbow_cartpole.py", build_rainbow_cartpole),
    "rainbow_atari": ("examples/rainbow_atari.py", build_rainbow_atari),
    "ddpg_pendulum": ("examples/ddpg_pendulum.py --algo ddpg", build_ddpg_pendulum),
    "td3_pendulum": ("examples/ddpg_pendulum.py --algo td3", build_td3_pendulum),
    "ddpg_pendulum_compile": ("examples/ddpg_pendulum.py --algo ddpg --compile", build_ddpg_pendulum_compile),
    "td3_pendulum_compile": ("examples/ddpg_pendulum.py --algo td3 --compile", build_td3_pendulum_compile),
    "td3_pendulum_4envs": ("examples/ddpg_pendulum.py --algo td3 --num-envs 4", build_td3_pendulum_4envs),
    "td3_halfcheetah": ("examples/td3_halfcheetah.py", build_td3_halfcheetah),
    "option_critic_fourrooms": ("examples/option_critic_fourrooms.py", build_option_critic_fourrooms),
    "option_critic_cartpole": ("examples/option_critic_cartpole.py", build_option_critic_cartpole),
    "rainbow_cartpole_compile": ("examples/rainbow_cartpole.py --compile", build_rainbow_cartpole_compile),
    "rainbow_dqn_cartpole": ("RAINBOW_DQN_CARTPOLE (CleanRL dqn.py's settings)", build_rainbow_dqn_cartpole),
    "rainbow_dqn_cartpole_compile": ("RAINBOW_DQN_CARTPOLE --compile", build_rainbow_dqn_cartpole_compile),
}
assert tuple(BUILDERS) == AGENT_NAMES


# --------------------------------------------------------------------------------------- timing
def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _block(harness: Harness, n: int, device) -> tuple[float, int, int]:
    """Run ``n`` units of the training loop; return (seconds, env steps, updates) done."""
    steps0, updates0 = harness.env_steps, harness.updates
    _sync(device)
    start = time.perf_counter()
    harness.advance(n)
    _sync(device)
    seconds = time.perf_counter() - start
    return seconds, harness.env_steps - steps0, harness.updates - updates0


def measure(name: str, budget: Budget, args, log) -> dict:
    example, builder = BUILDERS[name]
    row: dict = {"agent": name, "example": example, "env": "", "status": "ok", "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    try:
        harness, info = builder(args)
    except Skip as exc:
        row["status"] = f"skipped: {exc}"
        log(f"  {name}: {row['status']}")
        return row
    row.update(info)
    device = getattr(harness.trainer, "device", None)
    row["device"] = str(device) if device is not None else "cpu"
    row["build_s"] = time.perf_counter() - t0
    try:
        # Warm-up, part 1: the learning-starts phase (acting into the buffer, no updates); its
        # first steps (one-time costs: the replay's allocation, first calls) are timed apart.
        calls = -(-harness.learning_starts // harness.steps_per_call)  # ceil
        first = min(calls, FIRST_STEPS)
        if first:
            seconds, steps, _ = _block(harness, first, device)
            row.update(first_steps=steps, first_steps_s=seconds)
        if calls > first:
            seconds, steps, updates = _block(harness, calls - first, device)
            row.update(warmup_steps=steps, warmup_s=seconds, warmup_steps_per_s=steps / seconds,
                       warmup_updates=updates)
        # A runner whose calls step fewer envs than steps_per_call (deep Option-Critic's rounds,
        # where finished envs wait) may still be short of learning_starts.
        while harness.env_steps < harness.learning_starts:
            harness.advance(1)
        # Warm-up, part 2: a few steps with updates.
        seconds, _, updates = _block(harness, budget.warm_updates, device)
        row.update(warm_updates_s=seconds, warm_updates=updates)  # holds the compilation of compile=True rows
        n = args.steps or budget.steps[name]
        blocks = [_block(harness, n, device) for _ in range(budget.repeats)]
    except Exception as exc:  # noqa: BLE001  (report it and go on with the other agents)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row["status"] = f"failed: {type(exc).__name__}: {text[:120]}"
        log(f"  {name}: {row['status']}")
        harness.close()
        return row
    harness.close()
    env_rates = [steps / s for s, steps, _ in blocks]
    update_rates = [updates / s for s, _, updates in blocks]
    row.update(
        env_steps_per_block=blocks[0][1], repeats=len(blocks),
        env_steps_per_s=statistics.median(env_rates), updates_per_s=statistics.median(update_rates),
        env_steps_per_s_min=min(env_rates), env_steps_per_s_max=max(env_rates),
        ms_per_env_step=1e3 / statistics.median(env_rates),
        all_env_steps_per_s=env_rates, all_updates_per_s=update_rates, total_s=time.perf_counter() - t0,
    )
    log(f"  {name}: {row['env_steps_per_s']:.0f} env steps/s, {row['updates_per_s']:.0f} updates/s "
        f"(median of {len(blocks)} x {blocks[0][1]} env steps; " + (
            f"learning starts: first {row['first_steps']} steps {row['first_steps_s']:.2f} s, then "
            f"{row['warmup_steps_per_s']:.0f} steps/s; " if "warmup_steps_per_s" in row else "no learning-starts phase; ")
        + f"{row['total_s']:.1f} s in all)")
    if getattr(getattr(harness, "trainer", None), "config", None) is not None and getattr(harness.trainer.config, "compile", False):
        row["compile_warmup_s"] = row["warm_updates_s"]
        log(f"  {name}: compile warm-up (the first {row['warm_updates']} updates, compilation included) "
            f"{row['compile_warmup_s']:.1f} s, not in the rates above")
    return row


# --------------------------------------------------------------------------------------- output
def format_table(rows: list[dict]) -> str:
    head = (f"{'agent':<24} | {'env':<32} | {'env steps/s':>11} | {'(min-max)':>13} | {'updates/s':>9} | "
            f"{'warm-up steps/s':>15} | {'threads':>7} | {'timed':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"{r['agent']:<24} | {r['env']:<32} | {r['status']}")
            continue
        spread = f"{r['env_steps_per_s_min']:.0f}-{r['env_steps_per_s_max']:.0f}"
        warm = f"{r['warmup_steps_per_s']:.0f}" if "warmup_steps_per_s" in r else "-"
        timed = f"{r['repeats']}x{r['env_steps_per_block']}"
        lines.append(f"{r['agent']:<24} | {r['env']:<32} | {r['env_steps_per_s']:>11.0f} | {spread:>13} | "
                     f"{r['updates_per_s']:>9.0f} | {warm:>15} | {r['threads']:>7} | {timed:>8}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- main
def main(args: argparse.Namespace, omp_policy: str) -> int:
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    base = QUICK if args.quick else FULL
    budget = Budget(repeats=args.repeats or base.repeats, steps=base.steps, warm_updates=base.warm_updates)
    names = [n for n in AGENT_NAMES if args.agents is None or n in args.agents]
    load = os.getloadavg()
    log(f"agents_throughput: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"OMP_WAIT_POLICY={omp_policy}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if load[0] > max(1.0, (os.cpu_count() or 1) - args.threads + 0.5):
        log("  note: the machine is busy (load average above the free cores); timings are noisy, read the medians")
    log(f"settings: {budget.repeats} timed blocks per agent{' (quick)' if args.quick else ''}, device {args.device}, "
        f"seed {args.seed}")

    rows = [measure(name, budget, args, log) for name in names]

    total_s = time.perf_counter() - t_start
    end_load = os.getloadavg()
    log(f"\nTraining throughput, median over the timed blocks (torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), OMP_WAIT_POLICY={omp_policy})")
    log(format_table(rows))
    log("  env steps: summed over parallel envs / learners; updates: optimizer steps (DDPG/TD3: critic updates;\n"
        "  tabular Option-Critic: one vmapped SGD step over its 10 learners); warm-up: the learning-starts phase\n"
        "  (acting and storing only, first 50 steps left out); timed: blocks x env steps per block;\n"
        "  compile=True rows: torch.compile's warm-up is printed apart and left out of the rates;\n"
        "  evaluation, checkpoints and logs are off")
    ok = {r["agent"]: r for r in rows if r["status"] == "ok"}
    for eager in ("rainbow_cartpole", "rainbow_dqn_cartpole"):
        if eager in ok and f"{eager}_compile" in ok:
            log(f"{eager}: compile=True / eager env steps/s, side by side in this run: "
                f"{ok[eager + '_compile']['env_steps_per_s'] / ok[eager]['env_steps_per_s']:.2f}x")
    replay_bytes = None
    if "rainbow_atari" in names:  # with the Atari row (also when ale-py is missing: it needs no emulator)
        replay_bytes = atari_replay_bytes()
        log(f"Rainbow's Atari replay (FrameStackReplay, 4x84x84 uint8, prioritized): "
            f"{replay_bytes['bytes_per_transition']:,.0f} bytes per transition "
            f"(a buffer of obs and next_obs stacks: {replay_bytes['naive_frame_bytes_per_transition']:,} of frames alone)")
    log(f"\ntotal run time {total_s:.1f} s; load average at the end {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}")

    payload = {
        "benchmark": "agents_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": omp_policy,
        "load_average_start": list(load),
        "load_average_end": list(end_load),
        "quick": args.quick,
        "device": args.device,
        "seed": args.seed,
        "timing": {"method": "time.perf_counter around the runner's training loop, median over blocks",
                   "repeats": budget.repeats, "warm_update_steps": budget.warm_updates,
                   "runner_steps_per_block": {n: args.steps or budget.steps[n] for n in names}},
        "rows": rows,
        "atari_replay": replay_bytes,
        "total_seconds": total_s,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    log(f"wrote {path}")
    return 1 if any(r["status"].startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(_ARGS, _OMP_POLICY))
