"""Env steps per second of the task-aware vector sampler (policy in the loop) against the bare
env stepped with random actions, for HalfCheetah-v5 and Meta-World reach-v3, in one run.

    python benchmarks/sampler_throughput.py                       # both envs, ~1 minute
    python benchmarks/sampler_throughput.py --envs cheetah --repeats 5 --output /tmp/tp.json

For each env, three loops over the same number of steps, interleaved ``--repeats`` times
(so load from other processes hits all three alike; the median of each is reported):

* ``bare``: one gymnasium env (``gym.make("HalfCheetah-v5")`` / metaworld's ``reach-v3`` class
  on a task), ``env.step(env.action_space.sample())``, reset at each episode end;
* ``bare_vector``: a ``SyncVectorEnv`` of the sampler's size with random actions (the vector
  env's own cost, no task wrapper, no policy);
* ``sampler``: ``TaskVectorSampler.sample`` with a 64x64 Gaussian policy, ``N x E`` sub-envs each
  on its task, one batched policy call per step, Episodes assembled on the policy's device.

``ratio = sampler / bare`` is the headline (target: above 0.8, i.e. the sampler loses less than
20% to the bare env); ``sampler / bare_vector`` isolates the sampler's own overhead.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from _common import configure_openmp  # benchmarks/_common.py (this folder is on sys.path)


def bare_steps_per_second(make_env, steps: int, seed: int) -> float:
    env = make_env()
    env.action_space.seed(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def bare_vector_steps_per_second(make_env, num_envs: int, horizon: int, calls: int, seed: int) -> float:
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv([make_env] * num_envs)
    envs.action_space.seed(seed)
    start = time.perf_counter()
    for c in range(calls):
        envs.reset(seed=seed + c)
        for _ in range(horizon):
            envs.step(envs.action_space.sample())
    rate = calls * horizon * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def sampler_steps_per_second(family, tasks, num_tasks: int, episodes: int, horizon: int, calls: int,
                             seed: int) -> tuple[float, float]:
    from functional_metarl.nn import gaussian_policy
    from functional_metarl.runners import TaskVectorSampler

    policy = gaussian_policy(family.obs_dim, family.act_dim, (64, 64), "tanh")
    params = policy.init(seed)
    with TaskVectorSampler(family.make_env, num_tasks, episodes, horizon, seed=seed) as sampler:
        sampler.sample(params, tasks, policy)  # builds Meta-World's lazily made inner envs
        sampler.steps_taken = 0
        start = time.perf_counter()
        for _ in range(calls):
            sampler.sample(params, tasks, policy)
        seconds = time.perf_counter() - start
        return sampler.steps_taken / seconds, sampler.steps_taken / (calls * num_tasks * episodes * horizon)


def run_env(name: str, args: argparse.Namespace) -> dict:
    import numpy as np

    from functional_metarl.envs import HalfCheetahVel, MetaWorldFamily

    horizon = args.horizon
    if name == "cheetah":
        import gymnasium as gym

        family = HalfCheetahVel(horizon=horizon)
        bare_make = lambda: gym.make("HalfCheetah-v5", max_episode_steps=horizon)  # noqa: E731
        vector_make = bare_make
    else:
        family = MetaWorldFamily("ML1", "reach-v3", seed=args.seed, horizon=horizon)
        task, cls = family.train_tasks[0], family.train_classes["reach-v3"]

        def bare_make():
            import gymnasium as gym

            env = cls()
            env.set_task(task)
            return gym.wrappers.TimeLimit(env, horizon)

        vector_make = bare_make
    tasks = family.sample_tasks(args.tasks, np.random.default_rng(args.seed))
    num_envs = args.tasks * args.episodes
    steps = args.calls * num_envs * horizon
    rows = {"bare": [], "bare_vector": [], "sampler": []}
    alive = []
    for r in range(args.repeats):
        rows["bare"].append(bare_steps_per_second(bare_make, steps, args.seed + r))
        rows["bare_vector"].append(bare_vector_steps_per_second(vector_make, num_envs, horizon, args.calls, args.seed + r))
        rate, frac = sampler_steps_per_second(family, tasks, args.tasks, args.episodes, horizon, args.calls, args.seed + r)
        rows["sampler"].append(rate)
        alive.append(frac)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "env": "HalfCheetah-v5 (HalfCheetahVel)" if name == "cheetah" else "Meta-World reach-v3 (ML1)",
        "sub_envs": f"{args.tasks} tasks x {args.episodes} episodes", "horizon": horizon,
        "steps_per_loop": steps, "steps_per_second": {k: round(v, 1) for k, v in med.items()},
        "all_runs": {k: [round(x, 1) for x in v] for k, v in rows.items()},
        "ratio_sampler_over_bare": round(med["sampler"] / med["bare"], 3),
        "ratio_sampler_over_bare_vector": round(med["sampler"] / med["bare_vector"], 3),
        "fraction_of_steps_inside_episodes": round(statistics.mean(alive), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", choices=("cheetah", "metaworld"), default=["cheetah", "metaworld"])
    parser.add_argument("--tasks", type=int, default=4, help="N, tasks per sampler call")
    parser.add_argument("--episodes", type=int, default=5, help="E, episodes per task")
    parser.add_argument("--horizon", type=int, default=150)
    parser.add_argument("--calls", type=int, default=3, help="sampler calls per timed loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--omp-wait-policy", default=None)
    parser.add_argument("--output", default="benchmarks/results/sampler_throughput.json")
    args = parser.parse_args()
    omp = configure_openmp(args.omp_wait_policy)
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = [run_env(name, args) for name in args.envs]
    report = {
        "command": "python benchmarks/sampler_throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v is not None and k != "output"),
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
                   f"torch {torch.__version__}, threads {args.threads}, OMP_WAIT_POLICY {omp}",
        "wall_seconds": round(time.perf_counter() - start, 1),
        "results": results,
    }
    for r in results:
        sps = r["steps_per_second"]
        print(f"{r['env']:<34} bare {sps['bare']:8.0f}  bare vector {sps['bare_vector']:8.0f}  sampler {sps['sampler']:8.0f} "
              f"steps/s -> sampler/bare {r['ratio_sampler_over_bare']:.2f}, sampler/bare-vector "
              f"{r['ratio_sampler_over_bare_vector']:.2f}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wall {report['wall_seconds']} s -> {out}")


if __name__ == "__main__":
    main()
