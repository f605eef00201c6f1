"""Checks that need a CUDA device (marked ``cuda``; skipped without one). ``benchmarks/gpu_check.sh``
runs them whenever a GPU machine is at hand."""

from __future__ import annotations

import pytest
import torch

from functional_metarl import envs, meta, nn, optim
from functional_metarl.runners import CHECKPOINT_FILE, MAMLConfig, MAMLTrainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_trpo_meta_step_on_cuda_matches_cpu():
    nav, policy = envs.Navigation2D(horizon=8), nn.gaussian_policy(2, 2, hidden=(16,))
    gen = torch.Generator().manual_seed(0)
    tasks = nav.sample_tasks(4, gen)
    noise = envs.sample_noise(8, 4, 6, 2, gen)
    params = policy.init(0)
    batch = meta.make_rl_batches(envs.rollout(params, tasks, noise, nav, policy))
    step = meta.trpo(policy, optim.sgd(0.1))
    cpu, _, cpu_stats = step.update(params, (), batch, batch)
    to = lambda tree: type(tree)(*(None if x is None else x.cuda() for x in tree))  # noqa: E731
    gpu, _, gpu_stats = step.update({k: v.cuda() for k, v in params.items()}, (), to(batch), to(batch))
    for k in cpu:
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-4, atol=1e-5)
    assert gpu_stats["step_fraction"] == cpu_stats["step_fraction"]


def test_maml_trainer_trains_and_resumes_bit_identically_on_cuda(tmp_path):
    config = MAMLConfig(iterations=4, meta_batch_size=4, episodes_per_task=4, horizon=10, hidden=(8,), device="cuda")
    straight = MAMLTrainer(config)
    straight.train(progress=False)
    first = MAMLTrainer(MAMLConfig(**{**config.to_dict(), "iterations": 2, "hidden": (8,)}), tmp_path)
    first.train(progress=False)
    second = MAMLTrainer(config, tmp_path)
    second.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    second.train(progress=False)
    for k in straight.params:
        assert straight.params[k].device.type == "cuda"
        assert torch.equal(second.params[k], straight.params[k]), k
