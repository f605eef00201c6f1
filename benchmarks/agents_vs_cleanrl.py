"""Our off-policy agents against CleanRL's single-file scripts, side by side, at identical settings.

    bash benchmarks/cleanrl_env.sh                  # once: CleanRL in its own env, .venv-cleanrl
    python benchmarks/agents_vs_cleanrl.py          # every row, 3 repeats, 1 compiled (~10 min on 2 busy cores)
    python benchmarks/agents_vs_cleanrl.py --rows dqn_cartpole ddpg_pendulum --repeats 5 --steps 3000
    python benchmarks/agents_vs_cleanrl.py --ours-only --compile off     # no CleanRL env needed

Rows (CleanRL 1.2.0's script on the right; the settings are one table, ``ROWS`` below, from
which both sides' arguments are built, and are printed with the results):

- ``dqn_cartpole``: our Rainbow with its six parts off (no double, uniform replay, no dueling,
  1-step, scalar Q-head, ε-greedy; no gradient clipping, Adam eps 1e-8, squared TD loss where
  the config has ``huber_delta``) against ``cleanrl.dqn``: CartPole-v1, Q-net 120-84, batch 128,
  an update every 10 env steps, hard target copy every 500, lr 2.5e-4, replay 10k, ε from 1 to
  0.05 over half the run;
- ``rainbow_cartpole``: our full Rainbow (all six parts on) at the same loop settings, against
  the same ``cleanrl.dqn`` runs (CleanRL has no Rainbow): how much its parts cost;
- ``ddpg_pendulum`` / ``td3_pendulum`` / ``td3_halfcheetah``: ``cleanrl.ddpg_continuous_action``
  and ``cleanrl.td3_continuous_action``: 256-256 actor and critic(s), batch 256, one critic
  update per env step, the actor and Polyak targets (tau 0.005) every 2nd (CleanRL's DDPG too;
  where our DDPG cannot delay its actor, CleanRL's is run with ``--policy-frequency 1`` and the
  row says so), lr 3e-4, Gaussian exploration 0.1 x the action half-range, TD3 smoothing 0.2
  clipped at 0.5, replay 100k. HalfCheetah: ours v5 on gymnasium 1.x, CleanRL v4 on gymnasium
  0.29 (through gym 0.23, see benchmarks/cleanrl_gym_shim.py): the same MuJoCo model.

Every row: one env, ``--learning-starts`` (default 1,000) env steps of random actions without
updates, then ``--steps`` timed env steps with updates; CPU; one thread on each side
(``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1`` for both processes, ``torch.set_num_threads(1)``
here), so that the comparison is of code, not of threads. Run it on an otherwise quiet machine.

How speed is measured, the same way on both sides: wall-clock stamps every 100 env steps after
learning starts. CleanRL's scripts write their losses to TensorBoard every 100 steps once
learning has started (``global_step % 100 == 0``), each event with its ``wall_time`` and
``global_step``; this script reads them back from the event files (with the CleanRL env's
tensorboard) after the run. Ours is driven iteration by iteration through its runner's
``train_iteration`` (the body of ``train()``), with a ``time.time()`` stamp every 100 env steps.
The steady-state rate of a run is (env steps between the first and the last stamp) / (their
wall-time difference): the first 100 steps after learning starts (first updates, allocator
warm-up, and ``torch.compile``'s compilation) and everything before (process start, imports,
replay allocation, the random-action phase) are left out. Their time for ours is reported as
"warm-up s" (the first 100 steps with updates); for the compiled run, the difference from
eager's is the compile warm-up. Updates/s: ours counts them (Rainbow's ``updates``, DDPG/TD3's
critic updates); CleanRL's are those its loop makes between the stamps (one per
``train_frequency`` steps for DQN, one critic update per step for DDPG/TD3).

Alternation: per row and repeat, ours (eager), then CleanRL, then ours compiled (A B C A B C ...;
the compiled run only in the first ``--compile-repeats`` repeats, default 1, as each compiles for
tens of seconds), so a change of machine load falls on both sides; the table shows medians over
``--repeats`` and the ratio ours / CleanRL of the medians. ``compile`` rows appear where the
runner's config has a ``compile`` field (``--compile auto``, the default); a config field that
this version of the library does not have is reported as "not available in this version"
instead of failing.

What is the same and what is not: the settings above, the env (HalfCheetah's version aside) and
the algorithm's work per step. The code differs, which is the point: e.g. CleanRL's replay is
stable-baselines3's numpy buffer, and ours keeps per-episode seeds and actions for exact resume.
Both DQNs skip the Q-network's forward pass on ε-random steps (ours on a CPU, since issue 27), so
the ε schedule, the same on both sides, sets how many steps pay for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import configure_openmp  # benchmarks/_common.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLEANRL_PYTHON = ".venv-cleanrl/bin/python"
STAMP_EVERY = 100  # CleanRL logs every 100 global steps; ours is stamped on the same grid
NOT_AVAILABLE = "not available in this version"

# --------------------------------------------------------------------------------------- rows
# One table of settings per row; both sides' arguments are built from it.
_DQN = dict(env="CartPole-v1", hidden=(120, 84), batch_size=128, train_every=10, target_update=500, lr=2.5e-4,
            buffer_size=10_000, gamma=0.99, eps_start=1.0, eps_end=0.05, exploration_fraction=0.5)
_CONTINUOUS = dict(hidden=(256, 256), batch_size=256, lr=3e-4, gamma=0.99, tau=0.005, exploration_noise=0.1,
                   policy_delay=2, buffer_size=100_000, updates_per_step=1)
ROWS: dict[str, dict] = {
    "dqn_cartpole": dict(kind="dqn", script="cleanrl.dqn", ours="Rainbow, parts off (DQN)", steps=5_000, **_DQN),
    "rainbow_cartpole": dict(kind="rainbow", script="cleanrl.dqn", ours="Rainbow, all parts on", steps=2_000,
                             n_step=3, **_DQN),
    "ddpg_pendulum": dict(kind="ddpg", script="cleanrl.ddpg_continuous_action", ours="DDPG", env="Pendulum-v1",
                          steps=1_000, **_CONTINUOUS),
    "td3_pendulum": dict(kind="td3", script="cleanrl.td3_continuous_action", ours="TD3", env="Pendulum-v1",
                         steps=1_000, policy_noise=0.2, noise_clip=0.5, **_CONTINUOUS),
    "td3_halfcheetah": dict(kind="td3", script="cleanrl.td3_continuous_action", ours="TD3", env="HalfCheetah-v5",
                            cleanrl_env="HalfCheetah-v4", steps=500, policy_noise=0.2, noise_clip=0.5, **_CONTINUOUS),
}
ROW_NAMES = tuple(ROWS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROW_NAMES), metavar="ROW",
                        help=f"rows to run (default all: {' '.join(ROW_NAMES)})")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side per row, alternating (default 3)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed env steps after learning starts, every row (a multiple of 100, >= 200; default "
                             "per row: " + ", ".join(f"{k} {v['steps']}" for k, v in ROWS.items()) + ")")
    parser.add_argument("--learning-starts", type=int, default=1_000,
                        help="env steps of random actions without updates before timing (a multiple of 100; "
                             "default 1000)")
    parser.add_argument("--cleanrl-python", default=DEFAULT_CLEANRL_PYTHON,
                        help=f"python of the CleanRL env built by benchmarks/cleanrl_env.sh (default "
                             f"{DEFAULT_CLEANRL_PYTHON}, relative to the repository root)")
    parser.add_argument("--ours-only", action="store_true", help="run our side only (no CleanRL env needed)")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="also run ours with compile=True: auto (default) where the config has the field, "
                             "on (say so where it has not), off")
    parser.add_argument("--compile-repeats", type=int, default=1,
                        help="compiled runs per row, in the first repeats (default 1: each costs tens of seconds of "
                             "compilation on a CPU; pass --repeats to run one in every repeat)")
    parser.add_argument("--seed", type=int, default=1, help="seed of both sides (CleanRL's default: 1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one CleanRL run may take (default 900)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row(s) {unknown}; choose from {list(ROW_NAMES)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.steps is not None and (args.steps < 2 * STAMP_EVERY or args.steps % STAMP_EVERY):
        parser.error(f"--steps must be a multiple of {STAMP_EVERY} and >= {2 * STAMP_EVERY}, got {args.steps}")
    if args.learning_starts < STAMP_EVERY or args.learning_starts % STAMP_EVERY:
        parser.error(f"--learning-starts must be a positive multiple of {STAMP_EVERY}, got {args.learning_starts}")
    if args.compile_repeats < 1:
        parser.error(f"--compile-repeats must be >= 1, got {args.compile_repeats}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0, got {args.timeout}")
    args.rows = list(dict.fromkeys(args.rows))
    return args


THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

if __name__ == "__main__":
    _ARGS = parse_args()
    os.environ.update(THREAD_ENV)  # before torch loads: one thread, as the CleanRL process gets
    _OMP_POLICY = configure_openmp(None, default="passive")  # what the examples set

import torch  # noqa: E402

from functional_metarl.runners import DDPGConfig, DDPGTrainer, RainbowConfig, RainbowTrainer  # noqa: E402


# --------------------------------------------------------------------------------------- ours
def _fields(config_class) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)}


def _build_config(config_class, wanted: dict, optional: dict, notes: list[str]):
    """``config_class(**wanted, **optional)``, leaving out the optional fields this version lacks
    (each noted as not available). A missing *wanted* field raises: the row cannot match."""
    have = _fields(config_class)
    missing = sorted(set(wanted) - have)
    if missing:
        raise KeyError(f"{config_class.__name__} has no {missing} ({NOT_AVAILABLE})")
    kwargs = dict(wanted)
    for name, value in optional.items():
        if name in have:
            kwargs[name] = value
        else:
            notes.append(f"{config_class.__name__}.{name} {NOT_AVAILABLE} (wanted {name}={value!r})")
    return config_class(**kwargs)


def total_steps(row: dict, args) -> int:
    """Env steps of one run: learning starts + timed steps + 1 (CleanRL's loop stamps step g
    after g + 1 env steps, so its last stamp is at learning_starts + steps)."""
    return args.learning_starts + row["timed_steps"] + 1


def ddpg_delays_actor() -> bool:
    """Whether our DDPG can update its actor every 2nd critic update, as CleanRL's DDPG does
    (``policy_delay`` optional, applying to DDPG too); older versions fix DDPG's delay at 1."""
    field = DDPGConfig.__dataclass_fields__.get("policy_delay")
    return field is not None and field.default is None


def build_ours(name: str, row: dict, args, compile_: bool, notes: list[str]):
    """Our trainer for ``row``; returns ``(trainer, step counter name, update counter name)``."""
    total = total_steps(row, args)
    common = dict(seed=args.seed, device="cpu", iterations=total, checkpoint_every=total)
    optional = {"compile": True} if compile_ else {}
    if row["kind"] in ("dqn", "rainbow"):
        full = row["kind"] == "rainbow"
        wanted = dict(common, env_id=row["env"], num_envs=1, hidden=(row["hidden"][0],), head_hidden=row["hidden"][1],
                      batch_size=row["batch_size"], train_every=row["train_every"], target_update=row["target_update"],
                      lr=row["lr"], buffer_size=row["buffer_size"], gamma=row["gamma"],
                      learning_starts=args.learning_starts, eval_every=0, log_every=total,
                      double=full, prioritized=full, dueling=full, distributional=full, noisy=full,
                      n_step=row["n_step"] if full else 1)
        if not full:  # DQN as CleanRL's: ε-greedy on its schedule, plain Adam, no clipping
            wanted.update(eps_start=row["eps_start"], eps_end=row["eps_end"], adam_eps=1e-8, max_grad_norm=None,
                          eps_decay_steps=max(1, int(row["exploration_fraction"] * total)))
            optional["huber_delta"] = None  # 0.5 td^2, CleanRL's MSE up to a constant
        config = _build_config(RainbowConfig, wanted, optional, notes)
        return RainbowTrainer(config), "step", "updates"
    wanted = dict(common, algo=row["kind"], env_id=row["env"], start_steps=args.learning_starts,
                  batch_size=row["batch_size"], buffer_size=row["buffer_size"], gamma=row["gamma"], tau=row["tau"],
                  actor_lr=row["lr"], critic_lr=row["lr"], hidden=row["hidden"], exploration="gaussian",
                  exploration_sigma=row["exploration_noise"], updates_per_step=row["updates_per_step"],
                  save_replay=False)
    if row["kind"] == "td3":
        wanted.update(policy_noise=row["policy_noise"], noise_clip=row["noise_clip"], policy_delay=row["policy_delay"])
    elif ddpg_delays_actor():
        wanted.update(policy_delay=row["policy_delay"])
    optional["num_envs"] = 1
    config = _build_config(DDPGConfig, wanted, optional, notes)
    env = None
    if row["env"].startswith("HalfCheetah"):
        import gymnasium as gym

        env = gym.make(row["env"])
    return DDPGTrainer(config, env=env), "steps", "critic_updates"


def run_ours(name: str, row: dict, args, compile_: bool) -> dict:
    """One run of ours: random-action phase, then stamps every STAMP_EVERY env steps."""
    notes: list[str] = []
    try:
        trainer, step_attr, update_attr = build_ours(name, row, args, compile_, notes)
    except KeyError as exc:
        return {"status": str(exc.args[0]), "notes": notes}
    except Exception as exc:  # noqa: BLE001 (a row that cannot be built is reported, the others still run)
        return {"status": f"ours failed to build: {type(exc).__name__}: {exc}", "notes": notes}
    try:
        out = _time_ours(trainer, step_attr, update_attr, row, args)
    except Exception as exc:  # noqa: BLE001
        return {"status": f"ours failed: {type(exc).__name__}: {exc}", "notes": notes}
    out["notes"] = notes
    return out


def _time_ours(trainer, step_attr: str, update_attr: str, row: dict, args) -> dict:
    """The random-action phase, then a stamp every STAMP_EVERY env steps up to the last."""
    torch.set_num_threads(1)
    stamps: list[tuple[int, float, int]] = []  # (env steps, wall time, updates)
    try:
        steps = lambda: int(getattr(trainer, step_attr))  # noqa: E731
        target = args.learning_starts
        while steps() < target:
            trainer.train_iteration()
        t_start = time.time()
        last = args.learning_starts + row["timed_steps"]
        target = args.learning_starts + STAMP_EVERY
        while target <= last:
            while steps() < target:
                trainer.train_iteration()
            stamps.append((steps(), time.time(), int(getattr(trainer, update_attr))))
            target += STAMP_EVERY
    finally:
        trainer.close()
    out = _rates(stamps)
    out.update(status="ok", warmup_s=stamps[0][1] - t_start)
    return out


def _rates(stamps: list[tuple[int, float, int]]) -> dict:
    (s0, t0, u0), (s1, t1, u1) = stamps[0], stamps[-1]
    seconds = t1 - t0
    return {"env_steps_per_s": (s1 - s0) / seconds, "updates_per_s": (u1 - u0) / seconds,
            "timed_env_steps": s1 - s0, "timed_s": seconds}


# --------------------------------------------------------------------------------------- CleanRL
def cleanrl_command(row: dict, args, python: str) -> list[str]:
    """CleanRL's script and flags for ``row`` (CleanRL 1.2.0's argparse flags)."""
    total = total_steps(row, args)
    cmd = [python, "-W", "ignore", "-m", row["script"], "--env-id", row.get("cleanrl_env", row["env"]),
           "--seed", str(args.seed), "--total-timesteps", str(total), "--learning-starts", str(args.learning_starts),
           "--learning-rate", str(row["lr"]), "--buffer-size", str(row["buffer_size"]), "--gamma", str(row["gamma"]),
           "--batch-size", str(row["batch_size"]), "--cuda", "False", "--track", "False", "--capture-video", "False"]
    if row["kind"] in ("dqn", "rainbow"):
        cmd += ["--num-envs", "1", "--train-frequency", str(row["train_every"]),
                "--target-network-frequency", str(row["target_update"]), "--tau", "1.0",
                "--start-e", str(row["eps_start"]), "--end-e", str(row["eps_end"]),
                "--exploration-fraction", str(row["exploration_fraction"]), "--save-model", "False"]
    else:
        delay = row["policy_delay"] if (row["kind"] == "td3" or ddpg_delays_actor()) else 1
        cmd += ["--tau", str(row["tau"]), "--exploration-noise", str(row["exploration_noise"]),
                "--policy-frequency", str(delay)]
        if row["kind"] == "td3":
            cmd += ["--policy-noise", str(row["policy_noise"]), "--noise-clip", str(row["noise_clip"])]
    return cmd


# Runs in the CleanRL env (it has tensorboard): (global_step, wall_time) of every event of a tag.
_READ_EVENTS = r"""
import glob, json, sys
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
out = []
for path in sorted(glob.glob(sys.argv[1] + "/runs/*/events.out.tfevents.*")):
    for event in EventFileLoader(path).Load():
        if any(v.tag == sys.argv[2] for v in event.summary.value):
            out.append((event.step, event.wall_time))
print(json.dumps(out))
"""


def run_cleanrl(row: dict, args, python: str) -> dict:
    """One CleanRL run in a scratch folder; its rate from the TensorBoard stamps."""
    tag = "losses/td_loss" if row["kind"] in ("dqn", "rainbow") else "losses/qf1_loss"
    env = dict(os.environ, **THREAD_ENV)
    env.pop("PYTHONPATH", None)
    if row["script"] == "cleanrl.td3_continuous_action":  # the gym-0.23-era script: SB3 1.2.0 + shim
        # (the venv's python is a link to the base interpreter: its folder, not the link's target)
        env["PYTHONPATH"] = str(Path(os.path.abspath(python)).parents[1] / "gym-era")
    with tempfile.TemporaryDirectory(prefix="cleanrl_") as work:
        cmd = cleanrl_command(row, args, python)
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {"status": f"CleanRL run timed out after {args.timeout:.0f} s"}
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            return {"status": f"CleanRL failed (exit {proc.returncode}): {tail[0][:300]}"}
        read = subprocess.run([python, "-c", _READ_EVENTS, work, tag], env=env, capture_output=True, text=True,
                              timeout=300)
        if read.returncode != 0:
            return {"status": f"could not read CleanRL's events: {read.stderr.strip().splitlines()[-1:]}"}
    events = sorted(json.loads(read.stdout))
    if len(events) < 2:
        return {"status": f"CleanRL wrote {len(events)} '{tag}' event(s); need 2 stamps"}
    per_step_updates = 1.0 / row["train_every"] if row["kind"] in ("dqn", "rainbow") else row["updates_per_step"]
    stamps = [(int(step), float(wall), int(step * per_step_updates)) for step, wall in events]
    out = _rates(stamps)
    out["updates_per_s"] = out["env_steps_per_s"] * per_step_updates  # its loop's schedule, exactly
    out["status"] = "ok"
    return out


# --------------------------------------------------------------------------------------- driver
def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get("status") == "ok" and key in r]
    return statistics.median(values) if values else None


def _status(runs: list[dict]) -> str:
    bad = [r["status"] for r in runs if r.get("status") != "ok"]
    return "ok" if not bad else bad[0]


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    python = args.cleanrl_python
    if not os.path.isabs(python):
        python = str(ROOT / python)
    cleanrl_why = None
    if args.ours_only:
        cleanrl_why = "--ours-only"
    elif not os.access(python, os.X_OK):
        cleanrl_why = (f"no CleanRL env at {args.cleanrl_python} (build it: bash benchmarks/cleanrl_env.sh, or pass "
                       "--cleanrl-python)")
    if cleanrl_why:
        print(f"CleanRL side skipped: {cleanrl_why}; ours alone")
    compile_have = {"rainbow": "compile" in _fields(RainbowConfig), "ddpg": "compile" in _fields(DDPGConfig)}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}), OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"load average {os.getloadavg()[0]:.2f} at start; learning starts {args.learning_starts}, "
          f"repeats {args.repeats}, seed {args.seed}")
    results = []
    dqn_cleanrl: list[dict] | None = None
    for name in args.rows:
        row = dict(ROWS[name], timed_steps=args.steps or ROWS[name]["steps"])
        family = "rainbow" if row["kind"] in ("dqn", "rainbow") else "ddpg"
        do_compile = args.compile == "on" or (args.compile == "auto" and compile_have[family])
        skip = None
        if "HalfCheetah" in row["env"] and importlib.util.find_spec("mujoco") is None:
            skip = 'mujoco not installed in this env (pip install "gymnasium[mujoco]")'
        entry = {"row": name, "ours": row["ours"], "cleanrl_script": row["script"], "settings": _settings(row, args),
                 "eager": [], "compiled": [], "cleanrl": [], "notes": []}
        print(f"\n== {name}: ours {row['ours']} vs {row['script']} ({entry['settings']})", flush=True)
        if skip:
            entry["status"] = f"skipped: {skip}"
            print(f"   skipped: {skip}")
            results.append(entry)
            continue
        reuse = name == "rainbow_cartpole" and dqn_cleanrl is not None
        if name == "ddpg_pendulum" and not ddpg_delays_actor():
            entry["notes"].append("DDPGConfig cannot delay DDPG's actor (policy_delay None) in this version: "
                                  "CleanRL's DDPG run with --policy-frequency 1 to match")
        for r in range(args.repeats):
            run = run_ours(name, row, args, compile_=False)
            entry["eager"].append(run)
            print(f"   [{r + 1}/{args.repeats}] ours eager    {_line(run)}", flush=True)
            if not cleanrl_why and not reuse:
                run = run_cleanrl(row, args, python)
                entry["cleanrl"].append(run)
                print(f"   [{r + 1}/{args.repeats}] CleanRL       {_line(run)}", flush=True)
            if do_compile and r < args.compile_repeats:
                if not compile_have[family]:
                    entry["compiled"].append({"status": f"compile {NOT_AVAILABLE}"})
                    print(f"   [{r + 1}/{args.repeats}] ours compiled compile {NOT_AVAILABLE}", flush=True)
                else:
                    run = run_ours(name, row, args, compile_=True)
                    entry["compiled"].append(run)
                    print(f"   [{r + 1}/{args.repeats}] ours compiled {_line(run)}", flush=True)
        if reuse:
            entry["cleanrl"] = dqn_cleanrl
            entry["notes"].append("CleanRL column: the dqn_cartpole row's cleanrl.dqn runs (CleanRL has no Rainbow)")
        if name == "dqn_cartpole":
            dqn_cleanrl = entry["cleanrl"]
        for run in entry["eager"] + entry["compiled"]:
            for note in run.get("notes", []):
                if note not in entry["notes"]:
                    entry["notes"].append(note)
        entry["status"] = _status(entry["eager"])
        results.append(entry)
    table = _table(results, cleanrl_why)
    print("\n" + table)
    payload = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "load_average_end": os.getloadavg(),
               "learning_starts": args.learning_starts, "repeats": args.repeats, "seed": args.seed,
               "cleanrl": "skipped: " + cleanrl_why if cleanrl_why else args.cleanrl_python, "rows": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1))
        print(f"\nwritten to {args.json}")
    return payload


def _settings(row: dict, args) -> str:
    if row["kind"] in ("dqn", "rainbow"):
        parts = [row["env"], f"Q-net {row['hidden'][0]}-{row['hidden'][1]}", f"batch {row['batch_size']}",
                 f"train every {row['train_every']}", f"target every {row['target_update']}", f"lr {row['lr']:g}",
                 f"buffer {row['buffer_size']}", f"eps {row['eps_start']:g}->{row['eps_end']:g} over "
                 f"{row['exploration_fraction']:g} of the run" if row["kind"] == "dqn"
                 else f"n-step {row['n_step']}, noisy"]
    else:
        env = row["env"] + (f" (CleanRL {row['cleanrl_env']})" if "cleanrl_env" in row else "")
        delay = row["policy_delay"] if (row["kind"] == "td3" or ddpg_delays_actor()) else 1
        parts = [env, f"{row['hidden'][0]}-{row['hidden'][1]} nets", f"batch {row['batch_size']}",
                 f"{row['updates_per_step']} update/step", f"policy delay {delay}", f"tau {row['tau']:g}",
                 f"noise {row['exploration_noise']:g}", f"lr {row['lr']:g}", f"buffer {row['buffer_size']}"]
    parts += ["1 env", f"learning starts {args.learning_starts}", f"{row['timed_steps']} timed steps"]
    return ", ".join(parts)


def _line(run: dict) -> str:
    if run.get("status") != "ok":
        return run.get("status", "?")
    warm = f", warm-up {run['warmup_s']:.2f} s" if "warmup_s" in run else ""
    return f"{run['env_steps_per_s']:8.1f} env steps/s, {run['updates_per_s']:8.1f} updates/s{warm}"


def _cell(runs: list[dict], row: str, notes: list[str]) -> str:
    """A table cell for runs that gave no number: short, with the full reason in the notes."""
    status = _status(runs)
    if len(status) <= 40:
        return status
    notes.append(f"- {row}: {status}")
    return status.split(":")[0] + " (see notes)"


def _table(results: list[dict], cleanrl_why: str | None) -> str:
    head = ("| row | ours env steps/s | CleanRL env steps/s | ours / CleanRL | ours updates/s | CleanRL updates/s | "
            "compiled env steps/s | compiled / CleanRL | warm-up s eager / compiled |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = [f"- {e['row']}: {n}" for e in results for n in e["notes"]]
    for e in results:
        if e.get("status", "").startswith("skipped"):
            lines.append(f"| {e['row']} | {e['status']} |" + " |" * 7)
            continue
        ours = _median(e["eager"], "env_steps_per_s")
        theirs = _median(e["cleanrl"], "env_steps_per_s")
        comp = _median(e["compiled"], "env_steps_per_s")
        ratio = _fmt(ours / theirs, ".2f") + "x" if ours and theirs else "-"
        cratio = _fmt(comp / theirs, ".2f") + "x" if comp and theirs else "-"
        theirs_txt = _fmt(theirs) if theirs else (cleanrl_why and "skipped") or _cell(e["cleanrl"], e["row"], notes)
        comp_txt = _fmt(comp) if comp else ("-" if not e["compiled"] else _cell(e["compiled"], e["row"], notes))
        warm = f"{_fmt(_median(e['eager'], 'warmup_s'), '.2f')} / {_fmt(_median(e['compiled'], 'warmup_s'), '.2f')}"
        ours_txt = _fmt(ours) if ours else _cell(e["eager"], e["row"], notes)
        updates = f"{_fmt(_median(e['eager'], 'updates_per_s'))} | {_fmt(_median(e['cleanrl'], 'updates_per_s'))}"
        cells = [e["row"], ours_txt, theirs_txt, ratio, updates, comp_txt, cratio, warm]
        lines.append("| " + " | ".join(cells) + " |")
    spread = []
    for e in results:
        for side, key in (("ours", "eager"), ("CleanRL", "cleanrl"), ("compiled", "compiled")):
            vals = [r["env_steps_per_s"] for r in e[key] if r.get("status") == "ok"]
            if len(vals) > 1:
                spread.append(f"{e['row']} {side} {min(vals):.0f}-{max(vals):.0f}")
    out = "\n".join(lines)
    out += ("\n\nMedians over the repeats; steady state: env steps between the first and last of the stamps taken "
            f"every {STAMP_EVERY} env steps after learning starts, over their wall time. Warm-up s: the first "
            f"{STAMP_EVERY} steps with updates (compiled minus eager: the compile warm-up).")
    if spread:
        out += "\nSpread (min-max env steps/s): " + "; ".join(spread)
    if notes:
        out += "\nNotes:\n" + "\n".join(notes)
    return out


if __name__ == "__main__":
    main(_ARGS)
