"""The MAML-RL trainer (runners/maml_trainer.py) and the examples/maml_nav.py script."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from functional_metarl.envs import Navigation2D, NoNoise
from functional_metarl.meta import TRPOState
from functional_metarl.runners import CHECKPOINT_FILE, MAMLConfig, MAMLTrainer
from functional_metarl.runners.maml_samplers import PureFamilySampler

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> MAMLConfig:
    base = dict(
        iterations=2, meta_batch_size=3, episodes_per_task=3, horizon=10, hidden=(8,),
        seed=0, device="cpu", checkpoint_every=1,
    )
    base.update(overrides)
    return MAMLConfig(**base)


def _without_seconds(history):
    return [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in history]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_short_training_run_learns_to_adapt():
    """After a short MAML-TRPO run the one-step-adapted policy beats the meta-policy, both on the
    training stream (post vs pre return) and on held-out tasks (eval after 1 step vs 0)."""
    cfg = MAMLConfig(
        iterations=25, meta_batch_size=10, episodes_per_task=10, horizon=100, hidden=(16, 16),
        seed=1, device="cpu", checkpoint_every=100,
    )
    trainer = MAMLTrainer(cfg)
    history = trainer.train(progress=False)
    assert len(history) == 25 and [m["iteration"] for m in history] == list(range(1, 26))
    for m in history:
        assert all(math.isfinite(m[k]) for k in ("pre_return", "post_return", "meta_loss", "kl"))
        assert 0 <= m["kl"] <= cfg.trpo.max_kl
    late = history[-12:]
    gap = sum(m["post_return"] - m["pre_return"] for m in late) / len(late)
    assert gap > 3.0, gap
    # Meta-training improved the pre-adaptation policy too (returns are negative distances).
    early_pre = sum(m["pre_return"] for m in history[:3]) / 3
    late_pre = sum(m["pre_return"] for m in history[-3:]) / 3
    assert late_pre > early_pre
    evals = [trainer.evaluate(num_tasks=40, max_steps=1, seed=s) for s in (100, 101)]
    assert all(set(e) == {"0", "1"} for e in evals)
    assert sum(e["1"] - e["0"] for e in evals) / 2 > 0, evals


def test_evaluate_is_reproducible_and_leaves_training_state_alone():
    trainer = MAMLTrainer(tiny_config())
    params = {k: v.clone() for k, v in trainer.params.items()}
    gen_state = trainer.generator.get_state()
    a = trainer.evaluate(num_tasks=3, max_steps=2)
    b = trainer.evaluate(num_tasks=3, max_steps=2)
    c = trainer.evaluate(num_tasks=3, max_steps=2, seed=123)
    assert a == b and a != c and set(a) == {"0", "1", "2"}
    assert torch.equal(trainer.generator.get_state(), gen_state)
    assert all(torch.equal(trainer.params[k], params[k]) for k in params)
    with pytest.raises(ValueError):
        trainer.evaluate(num_tasks=0)


def test_evaluation_step_sizes_follow_inner_lrs():
    """Step k adapts with inner_lrs[min(k, len - 1)]: checked against adapting by hand with the
    same episodes (the default schedule is inner_lr, then inner_lr / 10)."""
    from functional_metarl.meta import make_rl_batches

    trainer = MAMLTrainer(tiny_config())
    returns, (tasks, episodes, _) = trainer.evaluate_with_episodes(
        num_tasks=3, max_steps=3, episodes_per_task=5, inner_lrs=(0.3, 0.02)
    )
    assert all(ep.obs.shape[2] == 5 for ep in episodes)  # episodes per task and step
    # Replay the protocol by hand: same task and noise stream, adaptation with the expected lrs.
    from functional_metarl.envs import rollout, sample_noise

    gen = torch.Generator().manual_seed(trainer.config.seed + 10_000)
    assert torch.equal(trainer.sampler.env.sample_tasks(3, gen).goal, tasks.goal)
    params = {k: v.expand(3, *v.shape).clone() for k, v in trainer.params.items()}
    for step, lr in enumerate((0.3, 0.02, 0.02, None)):
        noise = sample_noise(trainer.config.horizon, 3, 5, trainer.sampler.env.action_size, gen)
        expected = rollout(params, tasks, noise, trainer.sampler.env, trainer.policy, params_per_task=True)
        assert torch.equal(expected.actions, episodes[step].actions), step
        if lr is not None:
            batch = make_rl_batches(expected, trainer.config.gamma, trainer.config.gae_lambda)
            params = trainer.adapt_batch(params, batch, per_task=True, lr=lr)
    default, _ = trainer.evaluate_with_episodes(num_tasks=3, max_steps=2, episodes_per_task=5)
    tenth, _ = trainer.evaluate_with_episodes(num_tasks=3, max_steps=2, episodes_per_task=5, inner_lrs=(0.1, 0.01))
    assert default == tenth
    paper, _ = trainer.evaluate_with_episodes(num_tasks=3, max_steps=2, episodes_per_task=5, inner_lrs=(0.1, 0.05))
    assert paper["0"] == tenth["0"] and paper["1"] == tenth["1"] and paper["2"] != tenth["2"]
    for bad in ((), (0.1, -1.0), (float("nan"),)):
        with pytest.raises(ValueError, match="inner_lrs"):
            trainer.evaluate(num_tasks=2, inner_lrs=bad)
    with pytest.raises(ValueError, match="episodes_per_task"):
        trainer.evaluate(num_tasks=2, episodes_per_task=0)


def test_best_params_are_those_with_the_highest_post_return(tmp_path):
    """The paper evaluates the meta-params with the best post-adaptation return in training;
    post_return of iteration i is measured with the params *before* step i."""
    trainer = MAMLTrainer(tiny_config(iterations=4), tmp_path)
    snapshots = []
    for _ in range(4):
        snapshots.append({k: v.clone() for k, v in trainer.params.items()})
        trainer.train_iteration()
    best = max(range(4), key=lambda i: trainer.history[i]["post_return"])
    assert trainer.best_post_return == trainer.history[best]["post_return"]
    assert all(torch.equal(trainer.best_params[k], snapshots[best][k]) for k in snapshots[best])
    trainer.save_checkpoint()
    restored = MAMLTrainer(tiny_config(iterations=4), tmp_path)
    restored.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert restored.best_post_return == trainer.best_post_return
    assert all(torch.equal(restored.best_params[k], trainer.best_params[k]) for k in snapshots[best])


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("meta_optimizer", ["trpo", "adam"])
def test_resume_is_bit_identical(tmp_path, meta_optimizer):
    k = 2
    straight = MAMLTrainer(tiny_config(iterations=2 * k, meta_optimizer=meta_optimizer, meta_lr=1e-2))
    straight.train(progress=False)

    # checkpoint_every larger than k: the last iteration of a run is always checkpointed.
    first = MAMLTrainer(
        tiny_config(iterations=k, meta_optimizer=meta_optimizer, meta_lr=1e-2, checkpoint_every=50), tmp_path
    )
    first.train(progress=False)
    assert first.iteration == k
    second = MAMLTrainer(tiny_config(iterations=2 * k, meta_optimizer=meta_optimizer, meta_lr=1e-2), tmp_path)
    second.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert second.iteration == k
    second.train(progress=False)

    assert second.iteration == straight.iteration == 2 * k
    assert set(second.params) == set(straight.params)
    for name in straight.params:
        assert torch.equal(second.params[name], straight.params[name]), name
    assert _without_seconds(second.history) == _without_seconds(straight.history)
    assert torch.equal(second.generator.get_state(), straight.generator.get_state())
    if meta_optimizer == "adam":
        assert torch.equal(second.meta_state.count, straight.meta_state.count)
        for name in straight.params:
            assert torch.equal(second.meta_state.mu[name], straight.meta_state.mu[name])
            assert torch.equal(second.meta_state.nu[name], straight.meta_state.nu[name])
    else:
        assert isinstance(second.meta_state, TRPOState)
    # the params really moved during training (the comparison is not between two inits)
    init = MAMLTrainer(tiny_config()).params
    assert any(not torch.equal(init[n], straight.params[n]) for n in init)


def test_compiled_trainer_matches_eager_and_resumes_bit_identically(tmp_path):
    """compile=True (meta-gradient and line-search surrogate compiled) against the eager
    reference, one meta-iteration from the same seed: the meta-gradient norm within 1e-4
    relative, the meta-loss (0 at the old policy) within 1e-7, the same accepted line-search fraction, and the TRPO step in the same
    direction (cosine > 0.9999, norm within 1 %). The step itself is compared loosely on purpose:
    compiled code uses torch.tanh where eager CPU code uses the sigmoid form (1e-7 apart), and
    ten CG iterations on a curvature sample this small amplify that to about 1e-2. Then a compiled
    run resumed from its checkpoint is bit-identical to an uninterrupted compiled run."""
    from functional_metarl.tree import ravel

    settings = dict(meta_batch_size=3, episodes_per_task=8, hidden=(16,))
    eager = MAMLTrainer(tiny_config(iterations=1, **settings))
    start = ravel(eager.params)[0]
    eager.train(progress=False)
    straight = MAMLTrainer(tiny_config(compile=True, iterations=2, **settings))
    straight.train(progress=False)
    first = MAMLTrainer(tiny_config(compile=True, iterations=1, checkpoint_every=50, **settings), tmp_path)
    first.train(progress=False)
    (e,), (c,) = eager.history, first.history
    assert c["grad_norm"] == pytest.approx(e["grad_norm"], rel=1e-4)
    assert abs(c["meta_loss"] - e["meta_loss"]) < 1e-7  # the surrogate at the old policy: 0 up to rounding
    assert c["step_fraction"] == e["step_fraction"]
    eager_step, compiled_step = ravel(eager.params)[0] - start, ravel(first.params)[0] - start
    assert torch.nn.functional.cosine_similarity(eager_step, compiled_step, dim=0) > 0.9999
    assert compiled_step.norm() == pytest.approx(float(eager_step.norm()), rel=1e-2)
    second = MAMLTrainer(tiny_config(compile=True, iterations=2, **settings), tmp_path)
    second.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    second.train(progress=False)
    assert all(torch.equal(second.params[name], straight.params[name]) for name in straight.params)
    assert _without_seconds(second.history) == _without_seconds(straight.history)


def test_trainer_learns_on_another_pure_task_family():
    """MAMLTrainer is not navigation-only: a 1-D reach task family whose tasks hold a ``target``
    (no ``goal``) trains, and 30 meta-iterations make one inner step worth more on held-out
    tasks (the adaptation gain grows by over 1 and the adapted return improves)."""
    from typing import NamedTuple

    class LineTask(NamedTuple):
        target: torch.Tensor  # [N, 1]

    class LineState(NamedTuple):
        position: torch.Tensor  # [N, E, 1]
        done: torch.Tensor  # [N, E]

    class Line1D:
        """A point moves by clip(action, -0.1, 0.1) per step; reward -|position - target|."""

        obs_dim, act_dim, horizon = 1, 1, 20
        obs_shape, discrete_actions, action_size, episode_length = (1,), False, 1, 20

        def sample_tasks(self, n, generator=None):
            return LineTask(torch.rand(n, 1, generator=generator) - 0.5)

        def sample_noise(self, num_steps, batch_shape, generator=None):
            return NoNoise()

        def reset(self, tasks, noise):  # tasks.target [N, E, 1]
            position = torch.zeros(tasks.target.shape)
            return LineState(position, torch.zeros(position.shape[:2], dtype=torch.bool)), position

        def step(self, state, action, tasks, noise):
            position = state.position + action.clamp(-0.1, 0.1)
            reward = -(position - tasks.target).abs().squeeze(-1)
            return LineState(position, state.done), position, reward, state.done

    trainer = MAMLTrainer(tiny_config(iterations=30, meta_batch_size=10, episodes_per_task=10, horizon=20,
                                      hidden=(16,)), sampler=PureFamilySampler(Line1D()))
    before = trainer.evaluate(num_tasks=40, max_steps=1, episodes_per_task=20)
    trainer.train(progress=False)
    after = trainer.evaluate(num_tasks=40, max_steps=1, episodes_per_task=20)
    assert after["1"] - after["0"] > before["1"] - before["0"] + 1.0, (before, after)
    assert after["1"] > before["1"] + 1.0, (before, after)


# --------------------------------------------------------------------------- files
def test_checkpoint_and_metrics_files(tmp_path, monkeypatch):
    trainer = MAMLTrainer(tiny_config(iterations=3, checkpoint_every=2), tmp_path)
    saved_at = []
    original = trainer.save_checkpoint

    def recording_save():
        saved_at.append(trainer.iteration)
        return original()

    monkeypatch.setattr(trainer, "save_checkpoint", recording_save)
    trainer.train(progress=False)
    assert saved_at == [2, 3]

    files = sorted(p.name for p in tmp_path.iterdir())
    assert CHECKPOINT_FILE in files and "metrics.json" in files and "tensorboard" in files
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())

    state = _load(tmp_path / CHECKPOINT_FILE)
    assert state["iteration"] == 3
    for name, value in trainer.params.items():
        assert torch.equal(state["state"]["params"][name], value)
    assert state["config"]["hidden"] == [8]

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["history"]) == 3
    for i, m in enumerate(metrics["history"], start=1):
        assert m["iteration"] == i
        for key in ("pre_return", "post_return", "meta_loss", "kl", "seconds"):
            assert isinstance(m[key], float) and math.isfinite(m[key]), key
        assert m["seconds"] > 0
    assert metrics["config"]["meta_batch_size"] == 3
    # write_metrics keeps an earlier evaluation when called without one
    trainer.write_metrics(evaluation={"0": -1.0})
    trainer.write_metrics()
    assert json.loads((tmp_path / "metrics.json").read_text())["eval"] == {"0": -1.0}


def test_checkpoint_survives_a_crash_while_saving(tmp_path, monkeypatch):
    trainer = MAMLTrainer(tiny_config(iterations=1), tmp_path)
    trainer.train(progress=False)
    good = _load(tmp_path / CHECKPOINT_FILE)
    trainer.config.iterations = 2
    trainer.train_iteration()

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    monkeypatch.setattr(torch, "save", real_save)
    state = _load(tmp_path / CHECKPOINT_FILE)
    assert state["iteration"] == good["iteration"] == 1
    for name in good["state"]["params"]:
        assert torch.equal(state["state"]["params"][name], good["state"]["params"][name])


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "field,value",
    [
        ("iterations", 0),
        ("meta_batch_size", 0),
        ("meta_batch_size", -2),
        ("episodes_per_task", 0),
        ("horizon", -1),
        ("inner_steps", 0),
        ("checkpoint_every", 0),
        ("meta_batch_size", True),
        ("inner_lr", 0.0),
        ("inner_lr", -0.1),
        ("inner_lr", float("nan")),
        ("meta_lr", 0.0),
        ("meta_lr", -1e-3),
        ("gamma", 1.01),
        ("gamma", -0.1),
        ("gae_lambda", 1.5),
        ("meta_optimizer", "sgd"),
        ("mean_bound", 0.0),
        ("mean_bound", float("inf")),
        ("mean_bound", True),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MAMLConfig(**{field: value})


@pytest.mark.parametrize("field", ["learn_inner_lr", "normalize_inner_advantages", "first_order", "compile"])
def test_config_flags_must_be_bools(field):
    with pytest.raises(TypeError, match=field):
        MAMLConfig(**{field: 1})


def test_bad_trainer_settings():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="(?i)cuda"):
            MAMLTrainer(tiny_config(device="cuda"))
    with pytest.raises(ValueError, match=r"hidden\[0\]"):
        MAMLTrainer(tiny_config(hidden=(0,)))
    with pytest.raises(ValueError, match="max_kl"):
        tiny_config(trpo={"max_kl": 0.0})
    with pytest.raises(ValueError, match="horizon"):
        MAMLTrainer(tiny_config(horizon=10), sampler=PureFamilySampler(Navigation2D(horizon=20)))


def test_load_checkpoint_errors(tmp_path):
    trainer = MAMLTrainer(tiny_config(iterations=1), tmp_path)
    trainer.train(progress=False)
    path = tmp_path / CHECKPOINT_FILE

    with pytest.raises(FileNotFoundError):
        MAMLTrainer(tiny_config()).load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="inner_lr"):
        MAMLTrainer(tiny_config(inner_lr=0.05)).load_checkpoint(path)
    with pytest.raises(ValueError, match="hidden"):
        MAMLTrainer(tiny_config(hidden=(4,))).load_checkpoint(path)
    with pytest.raises(ValueError, match="meta_optimizer"):
        MAMLTrainer(tiny_config(meta_optimizer="adam")).load_checkpoint(path)
    with pytest.raises(ValueError, match="action_scale"):
        MAMLTrainer(tiny_config(action_scale=0.1)).load_checkpoint(path)
    # A checkpoint of the format before the runner base (no "format" entry) is refused, saying so.
    old = _load(path)
    del old["format"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="older"):
        MAMLTrainer(tiny_config()).load_checkpoint(tmp_path / "old.pt")
    # the run length, device and checkpoint period may change on resume
    other = MAMLTrainer(tiny_config(iterations=7, checkpoint_every=3))
    other.load_checkpoint(path)
    assert other.iteration == 1
    assert all(torch.equal(other.params[k], trainer.params[k]) for k in trainer.params)


# --------------------------------------------------------------------------- non-finite
def _two_good_iterations(tmp_path, meta_optimizer="trpo"):
    trainer = MAMLTrainer(tiny_config(iterations=2, checkpoint_every=1, meta_optimizer=meta_optimizer), tmp_path)
    trainer.train(progress=False)
    trainer.config.iterations = 4
    good = {k: v.clone() for k, v in trainer.params.items()}
    return trainer, good


def _assert_last_good_checkpoint(tmp_path, trainer, good):
    assert trainer.iteration == 2 and len(trainer.history) == 2
    state = _load(tmp_path / CHECKPOINT_FILE)
    assert state["iteration"] == 2 and len(state["history"]) == 2
    for name in good:
        assert torch.equal(state["state"]["params"][name], good[name])
    assert len(json.loads((tmp_path / "metrics.json").read_text())["history"]) == 2
    # and a fresh trainer resumes from it
    fresh = MAMLTrainer(dataclasses.replace(trainer.config, iterations=4), tmp_path)
    fresh.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert fresh.iteration == 2


@pytest.mark.parametrize("meta_optimizer", ["trpo", "adam"])
def test_non_finite_meta_loss_stops_training(tmp_path, monkeypatch, meta_optimizer):
    import functional_metarl.runners.maml_trainer as maml_trainer

    trainer, good = _two_good_iterations(tmp_path, meta_optimizer)

    def with_nan_loss(real):
        def nan_loss(*args):
            meta_grad = real(*args)
            return meta_grad._replace(loss=meta_grad.loss * float("nan"))

        return nan_loss

    # The trainer computes this meta-gradient through the kept adaptation and hands it to the step.
    assert trainer._keeps_adaptation()
    monkeypatch.setattr(maml_trainer, "surrogate_gradient_through", with_nan_loss(maml_trainer.surrogate_gradient_through))
    with pytest.raises(FloatingPointError, match="meta-loss is not finite"):
        trainer.train(progress=False)
    for name in good:
        assert torch.equal(trainer.params[name], good[name])
    _assert_last_good_checkpoint(tmp_path, trainer, good)


def test_non_finite_rewards_stop_training(tmp_path, monkeypatch):
    trainer, good = _two_good_iterations(tmp_path)
    real_step = trainer.sampler.env.step

    def nan_step(state, action, tasks, noise):
        state, obs, reward, done = real_step(state, action, tasks, noise)
        return state, obs, reward * float("nan"), done

    monkeypatch.setattr(trainer.sampler.env, "step", nan_step)
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.train(progress=False)
    _assert_last_good_checkpoint(tmp_path, trainer, good)


def test_nan_params_stop_training(tmp_path):
    trainer, good = _two_good_iterations(tmp_path)
    trainer.params = {k: torch.full_like(v, float("nan")) for k, v in trainer.params.items()}
    with pytest.raises(FloatingPointError):
        trainer.train(progress=False)
    _assert_last_good_checkpoint(tmp_path, trainer, good)


# --------------------------------------------------------------------------- example script
def _run_example(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "maml_nav.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_example_script_runs_and_resumes(tmp_path):
    out = tmp_path / "run"
    common = ["--meta-batch-size", "4", "--episodes-per-task", "4", "--eval-tasks", "4",
              "--output", str(out), "--no-progress", "--device", "cpu"]
    _run_example(["--iterations", "2", *common], tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["iteration"] for m in metrics["history"]] == [1, 2]
    assert set(metrics["eval"]["best"]) == set(metrics["eval"]["final"]) == {"0", "1", "2", "3"}
    assert all(math.isfinite(v) for v in [*metrics["eval"]["best"].values(), *metrics["eval"]["final"].values()])
    for name in ("returns.png", "trajectories.png", CHECKPOINT_FILE):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())
    first_two = metrics["history"]

    proc = _run_example(["--resume", "--iterations", "3", *common], tmp_path)
    assert "resumed" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["iteration"] for m in metrics["history"]] == [1, 2, 3]
    assert metrics["history"][:2] == first_two
    assert _load(out / CHECKPOINT_FILE)["iteration"] == 3


def _load_example_module():
    spec = importlib.util.spec_from_file_location("maml_nav_example", ROOT / "examples" / "maml_nav.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    if str(ROOT / "examples") not in sys.path:  # as `python examples/<name>.py` has it: _cli
        sys.path.insert(0, str(ROOT / "examples"))
    spec.loader.exec_module(module)
    return module


def test_example_plot_trajectories_with_four_goals(tmp_path):
    example = _load_example_module()
    trainer = MAMLTrainer(tiny_config())
    returns, (tasks, episodes, _) = trainer.evaluate_with_episodes(num_tasks=4, max_steps=3)
    example.plot_trajectories(tasks, episodes, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0


def test_example_plot_trajectories_with_fewer_than_four_eval_tasks(tmp_path):
    example = _load_example_module()
    trainer = MAMLTrainer(tiny_config())
    returns, (tasks, episodes, _) = trainer.evaluate_with_episodes(num_tasks=2, max_steps=3)
    example.plot_trajectories(tasks, episodes, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0


def test_scalar_logger_is_lazy_and_optional(tmp_path):
    from functional_metarl.runners.scalars import ScalarLogger

    off = ScalarLogger(None)
    off.scalar("train/x", 1.0, 0)
    off.flush()
    off.close()
    assert not off.started
    log = ScalarLogger(tmp_path / "tb")
    assert not log.started and not (tmp_path / "tb").exists()  # nothing written before a scalar
    log.scalar("train/x", 1.0, 0)
    log.flush()
    assert log.started and any((tmp_path / "tb").iterdir())
    log.close()
    assert not log.started


# --------------------------------------------------------------------------- several inner steps
def test_each_inner_step_learns_from_fresh_episodes_of_the_policy_adapted_so_far(monkeypatch):
    """With inner_steps=2 an iteration rolls out the meta-params, then the once-adapted params
    (per task), then the twice-adapted ones; the meta-step receives one batch per inner step."""
    import functional_metarl.runners.maml_trainer as trainer_module
    from functional_metarl.meta import make_rl_batches

    trainer = MAMLTrainer(tiny_config(inner_steps=2))
    params0 = {k: v.clone() for k, v in trainer.params.items()}
    sampled, seen = [], {}
    original_sample = trainer.sample

    def spy_sample(params, tasks, per_task=False, **kwargs):
        episodes, info = original_sample(params, tasks, per_task=per_task, **kwargs)
        sampled.append(({k: v.clone() for k, v in params.items()}, per_task, episodes))
        return episodes, info

    def spy_step(params, state, train, valid, *args, **kwargs):
        seen["train"], seen["valid"] = train, valid
        return original_step(params, state, train, valid, *args, **kwargs)

    original_step = trainer.meta_step.update
    monkeypatch.setattr(trainer, "sample", spy_sample)
    monkeypatch.setattr(trainer, "meta_step", trainer.meta_step._replace(update=spy_step))
    trainer.train_iteration()

    assert [per_task for _, per_task, _ in sampled] == [False, True, True]
    assert all(torch.equal(sampled[0][0][k], params0[k]) for k in params0)
    cfg = trainer.config
    batches = [make_rl_batches(episodes, cfg.gamma, cfg.gae_lambda) for _, _, episodes in sampled]
    once = trainer.adapt_batch(params0, batches[0])
    twice = trainer.adapt_batch(once, batches[1], per_task=True)
    for k in params0:
        torch.testing.assert_close(sampled[1][0][k], once[k], rtol=0, atol=0)
        torch.testing.assert_close(sampled[2][0][k], twice[k], rtol=0, atol=0)
    assert isinstance(seen["train"], tuple) and len(seen["train"]) == 2
    for got, want in zip(seen["train"], batches[:2]):
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert all(torch.equal(a, b) for a, b in zip(seen["valid"], batches[2]))


def _spy_on_inner_batches(trainer, monkeypatch):
    """Record what ``trainer`` samples (``sampled``), the batches its inner steps learn from, in
    training (the kept adaptation) and evaluation (``adapted_on``), and the meta-step's ``train`` /
    ``valid`` batches (``seen``)."""
    import functional_metarl.runners.maml_trainer as trainer_module

    sampled, seen, adapted_on = [], {}, []
    original_sample, original_adapt = trainer.sample, trainer.adapt_batch
    original_step, original_vjp = trainer.meta_step.update, trainer_module.adapt_tasks_vjp

    def spy_sample(*args, **kwargs):
        result = original_sample(*args, **kwargs)
        sampled.append(result[0])
        return result

    def spy_step(params, state, train, valid, *args, **kwargs):
        seen["train"], seen["valid"] = train, valid
        return original_step(params, state, train, valid, *args, **kwargs)

    def spy_adapt(params, batch, *args, **kwargs):
        adapted_on.append(batch)
        return original_adapt(params, batch, *args, **kwargs)

    def spy_vjp(params, batch, *args, **kwargs):  # the training adaptation, kept for the meta-gradient
        adapted_on.append(batch)
        return original_vjp(params, batch, *args, **kwargs)

    monkeypatch.setattr(trainer, "sample", spy_sample)
    monkeypatch.setattr(trainer, "adapt_batch", spy_adapt)
    monkeypatch.setattr(trainer_module, "adapt_tasks_vjp", spy_vjp)
    monkeypatch.setattr(trainer, "meta_step", trainer.meta_step._replace(update=spy_step))
    return sampled, seen, adapted_on


def test_raw_inner_advantages_reach_the_inner_steps_only(monkeypatch):
    """normalize_inner_advantages=False: the inner steps (training and evaluation) learn from
    the baseline residuals as they are; the meta-step's post-adaptation batch stays normalized."""
    from functional_metarl.meta import make_rl_batches

    trainer = MAMLTrainer(tiny_config(normalize_inner_advantages=False))
    sampled, seen, adapted_on = _spy_on_inner_batches(trainer, monkeypatch)
    trainer.train_iteration()
    cfg = trainer.config
    raw = make_rl_batches(sampled[0], cfg.gamma, cfg.gae_lambda, normalize=False)
    normalized = make_rl_batches(sampled[0], cfg.gamma, cfg.gae_lambda)
    assert not torch.allclose(raw.advantages, normalized.advantages)
    assert torch.equal(seen["train"].advantages, raw.advantages)
    assert torch.equal(adapted_on[0].advantages, raw.advantages)
    assert torch.equal(seen["valid"].advantages, make_rl_batches(sampled[1], cfg.gamma, cfg.gae_lambda).advantages)

    sampled.clear(), adapted_on.clear()
    trainer.evaluate(num_tasks=2, max_steps=1, episodes_per_task=2)
    eval_raw = make_rl_batches(sampled[0], cfg.gamma, cfg.gae_lambda, normalize=False)
    assert torch.equal(adapted_on[0].advantages, eval_raw.advantages)


def test_proportional_inner_step_reaches_training_and_evaluation_steps(tmp_path, monkeypatch):
    """proportional_inner_step: the training adaptation and every evaluation step learn from the
    batch scaled by meta.scale_by_final_reward (last 10 steps); the meta-step's post-adaptation
    batch stays as it was; the setting survives the checkpoint."""
    from functional_metarl.meta import make_rl_batches, scale_by_final_reward

    trainer = MAMLTrainer(tiny_config(proportional_inner_step=0.3, iterations=1), tmp_path)
    sampled, seen, adapted_on = _spy_on_inner_batches(trainer, monkeypatch)
    trainer.train(progress=False)
    cfg = trainer.config
    plain = make_rl_batches(sampled[0], cfg.gamma, cfg.gae_lambda)
    scaled = scale_by_final_reward(plain, 0.3, window=10)
    assert not torch.allclose(scaled.advantages, plain.advantages)
    assert torch.equal(adapted_on[0].advantages, scaled.advantages)
    assert torch.equal(seen["valid"].advantages, make_rl_batches(sampled[1], cfg.gamma, cfg.gae_lambda).advantages)

    sampled.clear(), adapted_on.clear()
    trainer.evaluate(num_tasks=2, max_steps=2, episodes_per_task=2)
    for episodes, batch in zip(sampled, adapted_on):  # both evaluation steps
        expected = scale_by_final_reward(make_rl_batches(episodes, cfg.gamma, cfg.gae_lambda), 0.3, window=10)
        assert torch.equal(batch.advantages, expected.advantages)
    assert len(adapted_on) == 2
    assert MAMLTrainer.from_checkpoint(tmp_path / CHECKPOINT_FILE).config.proportional_inner_step == 0.3


# --------------------------------------------------------------------------- learned step sizes
def test_learned_inner_step_sizes_train_resume_and_evaluate(tmp_path):
    """learn_inner_lr (Meta-SGD): the per-parameter step sizes start at inner_lr, move with the
    TRPO step, drive the post-adaptation rollouts, survive checkpoint and resume to the bit, and
    evaluation asks for the step sizes that belong to explicitly given params."""
    cfg = tiny_config(iterations=4, learn_inner_lr=True)
    straight = MAMLTrainer(cfg)
    assert all(torch.equal(v, torch.full_like(v, cfg.inner_lr)) for v in straight.learned_lrs.values())
    straight.train(progress=False)
    assert max(float((v - cfg.inner_lr).abs().max()) for v in straight.learned_lrs.values()) > 0

    first = MAMLTrainer(dataclasses.replace(cfg, iterations=2, checkpoint_every=50), tmp_path)
    first.train(progress=False)
    second = MAMLTrainer(cfg, tmp_path)
    second.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    second.train(progress=False)
    for name in straight.params:
        assert torch.equal(second.params[name], straight.params[name]), name
        assert torch.equal(second.learned_lrs[name], straight.learned_lrs[name]), name
        assert torch.equal(second.best_learned_lrs[name], straight.best_learned_lrs[name]), name
    assert _without_seconds(second.history) == _without_seconds(straight.history)

    # the adaptation uses the learned step sizes: doubling them doubles the step
    from functional_metarl.meta import make_rl_batches

    tasks = straight.sampler.env.sample_tasks(3, torch.Generator().manual_seed(5))
    batch = make_rl_batches(straight.sample(straight.params, tasks, generator=torch.Generator().manual_seed(6))[0])
    one = straight.adapt_batch(straight.params, batch)
    two = straight.adapt_batch(straight.params, batch, lr=2 * cfg.inner_lr)
    for name, p in straight.params.items():
        torch.testing.assert_close(two[name] - p, 2 * (one[name] - p), rtol=1e-5, atol=1e-7)

    returns = straight.evaluate(num_tasks=3, max_steps=1, episodes_per_task=2)
    assert set(returns) == {"0", "1"}
    with pytest.raises(ValueError, match="learned_lrs"):
        straight.evaluate(num_tasks=3, max_steps=1, params=straight.best_params)
    straight.evaluate(num_tasks=3, max_steps=1, params=straight.best_params, learned_lrs=straight.best_learned_lrs)
    with pytest.raises(ValueError, match="learn_inner_lr=False"):
        MAMLTrainer(tiny_config()).evaluate(num_tasks=3, max_steps=1, learned_lrs=straight.learned_lrs)


@pytest.mark.parametrize("overrides", [dict(meta_optimizer="adam"), dict(trpo=dict(curvature="adapted"))])
def test_learned_inner_step_sizes_need_trpo_with_exact_curvature(overrides):
    with pytest.raises(ValueError, match="learn_inner_lr needs"):
        tiny_config(learn_inner_lr=True, **overrides)


def test_from_checkpoint_restores_the_run_with_its_config(tmp_path):
    trainer = MAMLTrainer(tiny_config(iterations=2, hidden=(5,), inner_lr=0.05), tmp_path)
    trainer.train(progress=False)
    restored = MAMLTrainer.from_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert restored.config.hidden == (5,) and restored.config.inner_lr == 0.05 and restored.iteration == 2
    assert all(torch.equal(restored.params[k], trainer.params[k]) for k in trainer.params)
    assert torch.equal(restored.generator.get_state(), trainer.generator.get_state())
