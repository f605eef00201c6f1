"""What one MAML-A2C meta-step costs on the CPU, and how fast a meta-batch of Atari flavours steps.

    python benchmarks/atari_maml_step.py                  # both parts, meta-batch 4
    python benchmarks/atari_maml_step.py --part step --repeats 3 --json /tmp/atari_step.json
    python benchmarks/atari_maml_step.py --part envs --env-steps 200

Part ``step``: one ``meta.maml_a2c`` update (Nature-CNN actor-critic, 18 actions; one inner SGD
step; the issue's meta-optimizer ``chain(clip_by_global_norm(0.5), adam(1e-4))``) at meta-batch
``N = 4`` on real Breakout-flavour batches from ``runners.NStepTaskSampler`` (``T`` steps of ``E``
envs per task, inner and outer), first order and second order. Each order runs in its own
process (so its peak is its own): the median wall time over ``--repeats`` updates after one
warm-up, and the peak resident memory the update adds (``ru_maxrss`` after the updates minus the
resident size before the first), in MiB; with ``--device cuda`` the peak GPU memory allocated.

Part ``envs``: env steps per second (4 emulator frames each) of ``N x E`` Breakout envs of ``N``
flavours with random actions, (a) as the library's ``AtariTaskEnv`` sub-envs stepped together
in one ``gym.vector.SyncVectorEnv`` (what ``NStepTaskSampler`` does; any flavour), and (b) as one
native ``ale_py.AtariVectorEnv`` of ``E`` envs per flavour, stepped one after the other (its
C++ threads; it has no ``mode`` / ``difficulty`` argument, so every one of these runs the
default flavour: it shows what one vector env per flavour would cost if it could select one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

import functional_metarl as fm
from functional_metarl import envs, meta, nn, optim
from functional_metarl.runners import NStepTaskSampler

GAME = "breakout"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def time_meta_step(first_order: bool, num_tasks: int, envs_per_task: int, num_steps: int, repeats: int,
                   device: str = "cpu") -> dict:
    """One process's measurement: median seconds per update and the peak memory it adds (on a
    CUDA ``device``: the peak GPU memory allocated, which is what limits the meta-batch there)."""
    family = envs.AtariTaskFamily(envs.game_flavours(GAME, modes=[0, 4], difficulties=[0, 1]), full_action_space=True)
    net = nn.nature_cnn_actor_critic(family.num_actions)
    params = net.init(0, device=device)
    cuda = torch.device(device).type == "cuda"
    inner = optim.sgd(0.1)
    with NStepTaskSampler(family.make_env, num_tasks, envs_per_task, num_steps, seed=0) as sampler:
        sampler.set_tasks(family.sample_tasks(num_tasks, np.random.default_rng(0)))
        train = sampler.sample(params, net)
        adapted = meta.adapt_a2c(params, train, net, inner, first_order=True)
        valid = sampler.sample({k: v.detach() for k, v in adapted.items()}, net, params_per_task=True)
    step = meta.maml_a2c(net, inner, optim.chain(optim.clip_by_global_norm(0.5), optim.adam(1e-4)),
                         first_order=first_order)
    state = step.init(params)
    before = rss_mib()
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        params, state, stats = step.update(params, state, train, valid)
        if cuda:
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        before, peak = 0.0, torch.cuda.max_memory_allocated() / 2**20
    return {"device": device, "order": "first" if first_order else "second", "seconds": statistics.median(times), "runs": times,
            "peak_added_mib": peak - before, "rss_before_mib": before, "meta_loss": stats["meta_loss"]}


def env_throughput(num_tasks: int, envs_per_task: int, steps: int, threads: int) -> list[dict]:
    import ale_py
    import gymnasium as gym

    family = envs.AtariTaskFamily(envs.game_flavours(GAME, modes=[0, 4], difficulties=[0, 1])[:num_tasks])
    rows = []
    rng = np.random.default_rng(0)
    vec = gym.vector.SyncVectorEnv([family.make_env] * (num_tasks * envs_per_task),
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    vec.set_attr("task", [family.tasks[i // envs_per_task] for i in range(vec.num_envs)])
    vec.reset(seed=0)
    for _ in range(10):
        vec.step(rng.integers(0, family.num_actions, vec.num_envs))
    start = time.perf_counter()
    for _ in range(steps):
        vec.step(rng.integers(0, family.num_actions, vec.num_envs))
    elapsed = time.perf_counter() - start
    vec.close()
    rows.append({"layout": "AtariTaskEnv x N*E in one SyncVectorEnv (any flavour)",
                 "env_steps_per_s": steps * num_tasks * envs_per_task / elapsed})
    natives = [ale_py.AtariVectorEnv(GAME, envs_per_task, num_threads=threads, repeat_action_probability=0.25,
                                     reward_clipping=False, use_fire_reset=False) for _ in range(num_tasks)]
    for v in natives:
        v.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        for v in natives:
            v.step(rng.integers(0, family.num_actions, envs_per_task))
    elapsed = time.perf_counter() - start
    for v in natives:
        v.close()
    rows.append({"layout": f"ale_py.AtariVectorEnv(E, num_threads={threads}) per flavour (default flavour only)",
                 "env_steps_per_s": steps * num_tasks * envs_per_task / elapsed})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("step", "envs", "all"), default="all")
    parser.add_argument("--meta-batch-size", type=int, default=4)
    parser.add_argument("--envs-per-task", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=5, help="n-step length T of each batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch / ALE threads")
    parser.add_argument("--json", default=None)
    parser.add_argument("--device", default="cpu", help="where the meta-step runs (cuda: the GPU check)")
    parser.add_argument("--one-order", choices=("first", "second"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one_order is not None:
        row = time_meta_step(args.one_order == "first", args.meta_batch_size, args.envs_per_task, args.num_steps,
                             args.repeats, args.device)
        print("ROW " + json.dumps(row))
        return
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "torch": torch.__version__, "functional_metarl": getattr(fm, "__version__", "?"),
           "threads": args.threads, "load_average_before": os.getloadavg(),
           "meta_batch_size": args.meta_batch_size, "envs_per_task": args.envs_per_task, "num_steps": args.num_steps}
    if args.part in ("step", "all"):
        rows = []
        for order in ("first", "second"):
            proc = subprocess.run([sys.executable, __file__, "--one-order", order, "--meta-batch-size",
                                   str(args.meta_batch_size), "--envs-per-task", str(args.envs_per_task),
                                   "--num-steps", str(args.num_steps), "--repeats", str(args.repeats),
                                   "--threads", str(args.threads), "--device", args.device],
                                  capture_output=True, text=True, check=True)
            row = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("ROW "))[4:])
            rows.append(row)
            print(f"{order:>6}-order meta-step on {args.device}, N={args.meta_batch_size}, T={args.num_steps}, "
                  f"E={args.envs_per_task}: "
                  f"{row['seconds']:.2f} s (median of {args.repeats}), peak +{row['peak_added_mib']:.0f} MiB "
                  f"over {row['rss_before_mib']:.0f} MiB")
        out["meta_step"] = rows
    if args.part in ("envs", "all"):
        rows = env_throughput(args.meta_batch_size, args.envs_per_task, args.env_steps, args.threads)
        for row in rows:
            print(f"{row['env_steps_per_s']:8.0f} env steps/s ({4 * row['env_steps_per_s']:.0f} frames/s): "
                  f"{row['layout']}")
        out["envs"] = rows
    out["load_average_after"] = os.getloadavg()
    print(f"machine: {out['machine']}; load average before {out['load_average_before']}, "
          f"after {out['load_average_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
