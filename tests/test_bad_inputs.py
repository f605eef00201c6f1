"""Bad input at every public boundary: a clear error that names the argument, never a silently
wrong answer or a cryptic error from deep inside torch.

Each case is ``(id, call, exception type, regex)``; the regex must match the message and names
the argument (or the thing) that is wrong. The reproducers of issue #10 are marked ``repro``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

import functional_metarl as fm
from functional_metarl import envs, meta, nn, optim, rl, runners
from functional_metarl.envs import Episodes, Navigation2D, RegressionBatch, SineRegression
from functional_metarl.runners.replay import FrameStackReplay

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- small fixtures

NAV = Navigation2D(horizon=5)
GAUSS = nn.gaussian_policy(2, 2, hidden=(8,))
GAUSS_PARAMS = GAUSS.init(0)
CAT = nn.categorical_policy(2, 3, hidden=(8,))
MLP = nn.mlp(2, 2, hidden=(8,))
MLP_PARAMS = MLP.init(0)
T, B = 5, 4


def _tasks(n: int = 2):
    return NAV.sample_tasks(n, torch.Generator().manual_seed(0))


def _noise(n: int = 2, e: int = 3, act: int = 2, horizon: int = 5):
    return envs.sample_noise(horizon, n, e, act, torch.Generator().manual_seed(1))


def _episodes(n: int = 2, e: int = 3) -> Episodes:
    return envs.rollout(GAUSS_PARAMS, _tasks(n), _noise(n, e), NAV, GAUSS)


def _rl_batches(n: int = 2):
    return meta.make_rl_batches(_episodes(n))


def _with(episodes: Episodes, **changes) -> Episodes:
    return episodes._replace(**changes)


def _sine(tasks: int = 3, k: int = 4):
    sine = SineRegression()
    gen = torch.Generator().manual_seed(0)
    task_batch = sine.sample_tasks(tasks, gen)
    support = sine.sample_batch(task_batch, k, gen)
    query = sine.sample_batch(task_batch, k, gen)
    return support, query


SINE_NET = nn.mlp(1, 1, hidden=(8,))
SINE_PARAMS = SINE_NET.init(0)


def _mse(params, batch):
    return ((SINE_NET.apply(params, batch.x) - batch.y) ** 2).mean()


def _tb(t: int = T, b: int = B, seed: int = 0) -> torch.Tensor:
    return torch.randn(t, b, generator=torch.Generator().manual_seed(seed))


def _ones(t: int = T, b: int = B) -> torch.Tensor:
    return torch.ones(t, b)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- the cases

def _cases():
    support, query = _sine()
    sup_no_task = RegressionBatch(support.x[0], support.y[0])
    qry_no_task = RegressionBatch(query.x[0], query.y[0])
    learner = meta.maml(_mse, optim.sgd(0.1))
    mp = learner.init(SINE_PARAMS)
    batches = _rl_batches()
    return [
        # --- issue #10 reproducers
        ("repro2-rollout-non-policy", lambda: envs.rollout(MLP_PARAMS, _tasks(2), _noise(2), NAV, MLP),
         TypeError, "policy must be a policy template"),
        ("repro2-rollout-non-policy-3-tasks", lambda: envs.rollout(MLP_PARAMS, _tasks(3), _noise(3), NAV, MLP),
         TypeError, "policy must be a policy template"),
        ("repro3-maml_loss-no-task-axis",
         lambda: meta.maml_loss(SINE_PARAMS, sup_no_task, qry_no_task, _mse, _mse, optim.sgd(0.1)),
         ValueError, r"support leaf 0 expected shape \[tasks, K"),
        ("repro3-learner-no-task-axis", lambda: learner.meta_gradient(mp, sup_no_task, qry_no_task),
         ValueError, "task axis missing"),
        ("repro3-learner-adapt-no-task-axis", lambda: learner.adapt(mp, sup_no_task),
         ValueError, "task axis missing"),
        ("repro4-ppo-advantages-B", lambda: rl.ppo_clip_loss(_tb(), _tb(seed=1), torch.randn(B), _ones()),
         ValueError, "advantages expected shape"),
        ("repro4-ppo-old-log-prob-T1", lambda: rl.ppo_clip_loss(_tb(), torch.zeros(T, 1), _tb(seed=2), _ones()),
         ValueError, "old_log_prob expected shape"),
        ("repro4-ppo-mask-shape", lambda: rl.ppo_clip_loss(_tb(), _tb(seed=1), _tb(seed=2), torch.ones(T)),
         ValueError, "mask expected shape"),
        ("repro1-ddpg-batch-over-buffer",
         lambda: runners.DDPGConfig(iterations=300, start_steps=100, batch_size=5000, buffer_size=1000),
         ValueError, "batch_size"),
        ("repro1-ddpg-batch-over-total-steps",
         lambda: runners.DDPGConfig(iterations=300, start_steps=100, batch_size=500, buffer_size=1000),
         ValueError, "batch_size .* iterations"),
        ("repro1-ddpg-learning-never-starts",
         lambda: runners.DDPGConfig(iterations=300, start_steps=300, batch_size=50, buffer_size=1000),
         ValueError, "learning_starts"),
        # --- rl losses: shapes, dtypes, values
        ("pg-loss-advantages-shape", lambda: rl.policy_gradient_loss(_tb(), _tb(T, 1), _ones()),
         ValueError, "advantages expected shape"),
        ("pg-loss-1d", lambda: rl.policy_gradient_loss(torch.zeros(T), torch.zeros(T), torch.ones(T)),
         ValueError, r"log_prob expected shape \[T, B\]"),
        ("pg-loss-empty-time", lambda: rl.policy_gradient_loss(torch.zeros(0, B), torch.zeros(0, B), torch.ones(0, B)),
         ValueError, "empty axis"),
        ("pg-loss-int-log-prob", lambda: rl.policy_gradient_loss(torch.zeros(T, B, dtype=torch.long), _tb(), _ones()),
         TypeError, "log_prob must be floating point"),
        ("surrogate-old-shape", lambda: rl.surrogate_loss(_tb(), _tb(T + 1, B), _tb(), _ones()),
         ValueError, "old_log_prob expected shape"),
        ("ppo-clip-eps-zero", lambda: rl.ppo_clip_loss(_tb(), _tb(), _tb(), _ones(), clip_eps=0.0),
         ValueError, "clip_eps"),
        ("ppo-clip-eps-inf", lambda: rl.ppo_clip_loss(_tb(), _tb(), _tb(), _ones(), clip_eps=float("inf")),
         ValueError, "clip_eps"),
        ("masked-mean-mask-shape", lambda: rl.masked_episode_mean(_tb(), torch.ones(B, T)),
         ValueError, "mask expected shape"),
        ("normalize-advantages-mask", lambda: rl.normalize_advantages(_tb(), torch.ones(T, 1)),
         ValueError, "mask expected shape"),
        ("returns-mask-shape", lambda: rl.discounted_returns(_tb(), torch.ones(T), 0.9),
         ValueError, "mask expected shape"),
        ("returns-gamma-range", lambda: rl.discounted_returns(_tb(), _ones(), 1.5), ValueError, "gamma"),
        ("returns-gamma-type", lambda: rl.discounted_returns(_tb(), _ones(), "0.9"), TypeError, "gamma"),
        ("returns-empty", lambda: rl.discounted_returns(torch.zeros(0, B), torch.zeros(0, B), 0.9),
         ValueError, r"rewards expected shape \[T, \.\.\.\] with T >= 1"),
        ("returns-int-rewards", lambda: rl.discounted_returns(torch.ones(T, B, dtype=torch.long), _ones(), 0.9),
         TypeError, "rewards must be floating point"),
        ("gae-values-shape", lambda: rl.gae(_tb(), _tb(T, 1), _ones(), 0.9, 0.95), ValueError, "values expected shape"),
        ("gae-lambda-range", lambda: rl.gae(_tb(), _tb(), _ones(), 0.9, -0.1), ValueError, "lambda_"),
        ("baseline-obs-shape", lambda: rl.fit_linear_baseline(torch.zeros(T, B), _tb(), _ones()),
         ValueError, "obs"),
        ("gaussian-log-prob-x-shape", lambda: rl.gaussian_log_prob(torch.zeros(T, 2), torch.zeros(2), torch.zeros(T, 3)),
         ValueError, "x expected a shape"),
        ("gaussian-log-prob-log-std-shape",
         lambda: rl.gaussian_log_prob(torch.zeros(T, 2), torch.zeros(T, 3), torch.zeros(T, 2)),
         ValueError, "log_std expected a shape"),
        ("gaussian-kl-shape", lambda: rl.gaussian_kl(torch.zeros(3, 2), torch.zeros(2), torch.zeros(4, 2), torch.zeros(2)),
         ValueError, "mean_q"),
        ("categorical-log-prob-float-action",
         lambda: rl.categorical_log_prob(torch.zeros(T, 3), torch.full((T,), 1.7)), TypeError, "action must be an integer"),
        ("categorical-log-prob-action-shape",
         lambda: rl.categorical_log_prob(torch.zeros(T, 3), torch.zeros(T, 3, dtype=torch.long)),
         ValueError, "action expected shape"),
        ("categorical-kl-shape", lambda: rl.categorical_kl(torch.zeros(3, 4), torch.zeros(3, 5)), ValueError, "logits_q"),
        # --- envs and rollouts
        ("rollout-noise-ndim", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), _noise()[0], NAV, GAUSS),
         ValueError, r"noise expected shape \[T, N, E, act_dim\]"),
        ("rollout-noise-act-dim", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), _noise(act=3), NAV, GAUSS),
         ValueError, "noise expected 2 in its last axis"),
        ("rollout-noise-tasks", lambda: envs.rollout(GAUSS_PARAMS, _tasks(3), _noise(2), NAV, GAUSS),
         ValueError, "tasks"),
        ("rollout-noise-int", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), torch.zeros(5, 2, 3, 2, dtype=torch.long),
                                                   NAV, GAUSS), TypeError, "noise must be floating point"),
        ("rollout-noise-empty", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), torch.zeros(0, 2, 3, 2), NAV, GAUSS),
         ValueError, "noise has an empty axis"),
        ("rollout-categorical-on-continuous-env", lambda: envs.rollout(CAT.init(0), _tasks(), _noise(act=3), NAV, CAT),
         TypeError, "num_actions"),
        ("rollout-per-task-params-count",
         lambda: envs.rollout({k: v.expand(3, *v.shape) for k, v in GAUSS_PARAMS.items()}, _tasks(2), _noise(2),
                              NAV, GAUSS, params_per_task=True), ValueError, "stacked params|params_per_task"),
        ("rollout-flag-type", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), _noise(), NAV, GAUSS, params_per_task=1),
         TypeError, "params_per_task must be a bool"),
        ("sample-noise-negative", lambda: envs.sample_noise(-1, 2, 3, 2, None), ValueError, "horizon"),
        ("sample-noise-bool", lambda: envs.sample_noise(5, True, 3, 2, None), TypeError, "num_tasks"),
        ("sample-noise-distribution", lambda: envs.sample_noise(5, 2, 3, 2, None, distribution="beta"),
         TypeError, "distribution"),
        ("sample-noise-int-dtype", lambda: envs.sample_noise(5, 2, 3, 2, None, dtype=torch.long),
         TypeError, "dtype"),
        ("nav-horizon", lambda: Navigation2D(horizon=0), ValueError, "horizon"),
        # --- nn templates
        ("mlp-in-dim", lambda: nn.mlp(0, 1), ValueError, "in_dim"),
        ("mlp-hidden", lambda: nn.mlp(1, 1, hidden=(8, -1)), ValueError, r"hidden\[1\]"),
        ("mlp-activation", lambda: nn.mlp(1, 1, activation="swish"), ValueError, "activation"),
        ("mlp-input-dim", lambda: MLP.apply(MLP_PARAMS, torch.zeros(3, 5)), ValueError, r"input expected shape \[\.\.\., 2\]"),
        ("mlp-params-missing-key", lambda: MLP.apply({k: v for k, v in list(MLP_PARAMS.items())[1:]}, torch.zeros(2)),
         ValueError, "missing"),
        ("gaussian-init-std", lambda: nn.gaussian_policy(2, 2, init_std=0.0), ValueError, "init_std"),
        ("functional-distribution", lambda: nn.Functional(lambda: torch.nn.Linear(1, 1), 1, distribution="beta"),
         TypeError, "distribution"),
        ("init-seed-type", lambda: MLP.init(1.5), TypeError, "seed"),
        ("mlp-input-float64", lambda: MLP.apply(MLP_PARAMS, torch.zeros(3, 2, dtype=torch.float64)),
         TypeError, "input has dtype torch.float64 but the params are torch.float32"),
        ("mlp-input-int", lambda: MLP.apply(MLP_PARAMS, torch.zeros(3, 2, dtype=torch.long)),
         TypeError, "input has dtype torch.int64"),
        ("stacked-input-float64", lambda: GAUSS.apply_stacked({k: v.expand(2, *v.shape) for k, v in GAUSS_PARAMS.items()},
                                                               torch.zeros(2, 3, 2, dtype=torch.float64)),
         TypeError, "input has dtype"),
        # --- DDPG / TD3 / option-critic pieces: per-transition values never broadcast
        ("td-target-broadcast", lambda: rl.td_target(torch.zeros(4, 1), torch.ones(4), torch.zeros(4)),
         ValueError, "discount_t expected shape"),
        ("squared-td-error-broadcast", lambda: rl.squared_td_error(torch.zeros(4), torch.zeros(4, 1)),
         ValueError, "target_t expected shape"),
        ("clipped-double-q-broadcast", lambda: rl.clipped_double_q_target(torch.zeros(4), torch.ones(4), torch.zeros(4, 1),
                                                                          torch.zeros(4)), ValueError, "q1_tp1"),
        ("ou-noise-shape", lambda: rl.ou_noise_step(torch.zeros(2), torch.zeros(3)), ValueError, "eps expected shape"),
        ("smoothed-action-shape", lambda: rl.smoothed_target_action(torch.zeros(2), torch.zeros(3), 0.5,
                                                                    -torch.ones(2), torch.ones(2)), ValueError, "noise"),
        ("option-index-float", lambda: rl.termination_loss(torch.rand(3), torch.randn(3), torch.tensor(1.0)),
         TypeError, "option must be a 0-d integer tensor"),
        ("option-action-index-float", lambda: rl.intra_option_policy_loss(torch.randn(4), torch.tensor(1.0), torch.tensor(0.5)),
         TypeError, "a_tm1 must be a 0-d integer tensor"),
        # --- optim
        ("apply-updates-shape", lambda: optim.apply_updates({"w": torch.zeros(2)}, {"w": torch.zeros(3)}),
         ValueError, r"updates\['w'\] expected shape"),
        ("adam-b1", lambda: optim.adam(1e-3, b1=1.0), ValueError, "b1"),
        ("sgd-lr", lambda: optim.sgd(float("nan")), ValueError, "lr"),
        # --- meta: supervised
        ("maml-loss-bad-loss-fn", lambda: meta.maml_loss(SINE_PARAMS, support, query, None, _mse, optim.sgd(0.1)),
         TypeError, "loss_fn"),
        ("maml-loss-steps", lambda: meta.maml_loss(SINE_PARAMS, support, query, _mse, _mse, optim.sgd(0.1), steps=0),
         ValueError, "steps"),
        ("maml-loss-task-mismatch",
         lambda: meta.maml_loss(SINE_PARAMS, support, RegressionBatch(query.x[:2], query.y[:2]), _mse, _mse, optim.sgd(0.1)),
         ValueError, "support has 3 tasks but query has 2"),
        ("maml-loss-params-type", lambda: meta.maml_loss([1, 2], support, query, _mse, _mse, optim.sgd(0.1)),
         TypeError, "params"),
        ("adapt-first-order-type", lambda: meta.adapt(SINE_PARAMS, RegressionBatch(support.x[0], support.y[0]), _mse,
                                                      optim.sgd(0.1), first_order="yes"), TypeError, "first_order"),
        ("adapt-opt-type", lambda: meta.adapt(SINE_PARAMS, RegressionBatch(support.x[0], support.y[0]), _mse, "sgd"),
         TypeError, "inner_opt"),
        ("adapt-sequence-empty", lambda: meta.adapt_sequence(SINE_PARAMS, [], _mse, optim.sgd(0.1)),
         ValueError, "batches must be a non-empty sequence"),
        ("learner-chunk-size", lambda: meta.maml(_mse, optim.sgd(0.1), chunk_size=0), ValueError, "chunk_size"),
        ("learner-meta-type", lambda: learner.meta_gradient(SINE_PARAMS, support, query), TypeError, "MetaParams"),
        ("anil-head-empty", lambda: meta.anil(_mse, optim.sgd(0.1), head=()), ValueError, "head"),
        # --- meta: RL
        ("make-rl-batches-nan-rewards",
         lambda: meta.make_rl_batches(_with(_episodes(), rewards=torch.full((2, 5, 3), float("nan")))),
         ValueError, "episodes.rewards must be finite"),
        ("make-rl-batches-mask-values",
         lambda: meta.make_rl_batches(_with(_episodes(), mask=torch.full((2, 5, 3), 0.5))),
         ValueError, "episodes.mask must hold only 0 and 1"),
        ("make-rl-batches-time-major",
         lambda: meta.make_rl_batches(_with(_episodes(), rewards=torch.zeros(5, 3), mask=torch.ones(5, 3))),
         ValueError, r"episodes.rewards expected shape \[N, T, E\]"),
        ("make-rl-batches-obs-shape",
         lambda: meta.make_rl_batches(_with(_episodes(), obs=torch.zeros(2, 5, 3))), ValueError, "episodes.obs"),
        ("make-rl-batches-type", lambda: meta.make_rl_batches((1, 2, 3, 4)), TypeError, "episodes must be an Episodes"),
        ("make-rl-batches-gamma", lambda: meta.make_rl_batches(_episodes(), gamma=2.0), ValueError, "gamma"),
        ("final-reward-batch-type", lambda: meta.scale_by_final_reward(_episodes(), 0.4), TypeError,
         "batch must be an? RLBatch"),
        ("final-reward-no-rewards", lambda: meta.scale_by_final_reward(meta.RLBatch(*batches[:4]), 0.4), ValueError,
         "batch.rewards is None"),
        ("final-reward-unbatched", lambda: meta.scale_by_final_reward(meta.RLBatch(*(x[0] for x in batches[:5])), 0.4),
         ValueError, r"task-major batch, rewards and advantages \[N, T, E\]"),
        ("final-reward-reference-zero", lambda: meta.scale_by_final_reward(batches, 0.0), ValueError, "reference"),
        ("final-reward-reference-nan", lambda: meta.scale_by_final_reward(batches, float("nan")), ValueError, "reference"),
        ("final-reward-reference-bool", lambda: meta.scale_by_final_reward(batches, True), ValueError, "reference"),
        ("final-reward-window-zero", lambda: meta.scale_by_final_reward(batches, 0.4, window=0), ValueError, "window"),
        ("final-reward-window-long", lambda: meta.scale_by_final_reward(batches, 0.4, window=6), ValueError,
         r"window must be an int in \[1, 5\]"),
        ("final-reward-window-float", lambda: meta.scale_by_final_reward(batches, 0.4, window=2.5), TypeError, "window"),
        ("final-reward-positive-rewards",
         lambda: meta.scale_by_final_reward(batches._replace(rewards=batches.rewards.abs()), 0.4, window=2), ValueError,
         "cost-like rewards"),
        ("adapt-tasks-non-policy", lambda: meta.adapt_tasks(MLP_PARAMS, batches, MLP, optim.sgd(0.1)),
         ValueError, "policy must be a policy template"),
        ("adapt-tasks-advantages-shape",
         lambda: meta.adapt_tasks(GAUSS_PARAMS, batches._replace(advantages=batches.advantages[:, :, :1]), GAUSS,
                                  optim.sgd(0.1)), ValueError, "train.advantages expected shape"),
        ("adapt-tasks-missing-task-axis",
         lambda: meta.adapt_tasks(GAUSS_PARAMS, meta.RLBatch(*(x[0] for x in batches)), GAUSS, optim.sgd(0.1)),
         ValueError, r"train.mask expected shape \[N, T, E\]"),
        ("adapt-tasks-steps-mismatch", lambda: meta.adapt_tasks(GAUSS_PARAMS, (batches, batches), GAUSS, optim.sgd(0.1)),
         ValueError, "2 per-step inner batches for 1 inner steps"),
        ("surrogate-old-log-prob-shape",
         lambda: meta.maml_surrogate(GAUSS_PARAMS, batches, batches, torch.zeros(2, 5, 1), GAUSS, optim.sgd(0.1)),
         ValueError, "old_log_prob expected shape"),
        ("surrogate-task-count",
         lambda: meta.maml_surrogate(GAUSS_PARAMS, batches, _rl_batches(3), None, GAUSS, optim.sgd(0.1)),
         ValueError, "train has 2 tasks but valid has 3"),
        ("trpo-config-type", lambda: meta.trpo(GAUSS, optim.sgd(0.1), config={"max_kl": 0.01}), TypeError,
         "config must be a TRPOConfig"),
        ("trpo-compile-flag", lambda: meta.trpo(GAUSS, optim.sgd(0.1), compile="yes"), TypeError, "compile"),
        ("score-fn-policy", lambda: meta.score_fn(GAUSS_PARAMS, optim.sgd(0.1)), TypeError, "policy"),
        ("score-fn-steps", lambda: meta.score_fn(GAUSS, optim.sgd(0.1), steps=0), ValueError, "steps"),
        ("gradient-step-meta-opt-type", lambda: meta.gradient(GAUSS, optim.sgd(0.1), "adam"), TypeError,
         "meta_opt must be a GradientTransformation"),
        ("trpo-config-max-kl", lambda: meta.TRPOConfig(max_kl=0.0), ValueError, "max_kl"),
        ("trpo-config-curvature", lambda: meta.TRPOConfig(curvature="fisher"), ValueError, "curvature"),
        # --- runners: configs and devices
        ("maml-config-batch", lambda: runners.MAMLConfig(meta_batch_size=0), ValueError, "meta_batch_size"),
        ("maml-config-flag", lambda: runners.MAMLConfig(first_order="no"), TypeError, "first_order"),
        ("maml-config-proportional", lambda: runners.MAMLConfig(proportional_inner_step=-0.4), ValueError,
         "proportional_inner_step"),
        ("maml-config-proportional-horizon", lambda: runners.MAMLConfig(proportional_inner_step=0.4, horizon=5),
         ValueError, "proportional_inner_step needs horizon >= 10"),
        ("rainbow-config-batch", lambda: runners.RainbowConfig(batch_size=100, buffer_size=10), ValueError, "batch_size"),
        ("device-unknown", lambda: runners.resolve_device("banana"), ValueError, "device must be"),
        ("device-type", lambda: runners.resolve_device(3), TypeError, "device must be"),
    ]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


def test_case_count_is_what_the_readme_states():
    # The README's reliability section quotes the number of cases; keep them together.
    count = (len(CASES) + len(CHECKPOINT_CASES) + len(CLI_CASES) + len(_RUNNER_CONFIG_CASES) + len(PURE_LAYER_CASES)
             + len(MAML_LAYER_CASES) + len(RL2_ISSUE28_CASES))
    stated = re.search(r"holds (\d+) such cases", (ROOT / "README.md").read_text())
    assert stated is not None and int(stated.group(1)) == count
    assert count >= 60


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT_CASES = ["missing", "empty", "truncated", "garbage", "foreign", "directory"]


@pytest.mark.parametrize("kind", CHECKPOINT_CASES)
def test_bad_checkpoint_file_gives_one_error_naming_the_path(tmp_path, kind):
    good = tmp_path / "good.pt"
    torch.save({"config": {"a": 1}, "params": {"w": torch.zeros(1000)}}, good)
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        _write(path, b"")
    elif kind == "truncated":
        _write(path, good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "garbage":
        _write(path, b"not a checkpoint at all" * 10)
    elif kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "directory":
        path.mkdir()
    expected = FileNotFoundError if kind == "missing" else ValueError
    with pytest.raises(expected) as info:
        runners.read_checkpoint(path, {"a": 1}, ())
    message = str(info.value)
    assert str(path) in message
    assert "weights_only=False" not in message  # never advise unsafe loading
    # and a good file still loads, through the same function
    assert runners.read_checkpoint(good, {"a": 1}, ())["config"] == {"a": 1}


def test_checkpoint_that_needs_unpickling_is_refused(tmp_path):
    path = tmp_path / "pickle.pt"
    torch.save({"config": {}, "obj": Path("x")}, path)  # an arbitrary object: not weights-only loadable
    with pytest.raises(ValueError, match=str(path)):
        runners.load_checkpoint_file(path)


# ----------------------------------------------------------------------------- the example CLI

CLI_CASES = [
    (["--eval-lrs", "-1"], "--eval-lrs"),
    (["--eval-tasks", "0"], "--eval-tasks"),
    (["--eval-episodes", "0"], "--eval-episodes"),
    (["--meta-batch-size", "0"], "meta_batch_size"),
    (["--inner-lr", "-0.1"], "inner_lr"),
    (["--device", "banana"], "device"),
    (["--resume", "--output", "{tmp}/nothing"], "no checkpoint"),
    (["--estimator", "dicey"], "estimator"),
    (["--promp.epochs", "0"], "epochs"),
    (["--promp.clip-eps", "-0.2"], "clip_eps"),
    (["--proportional-inner-step", "0"], "proportional_inner_step"),
]


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    if str(ROOT / "examples") not in sys.path:  # as `python examples/<name>.py` has it: _cli
        sys.path.insert(0, str(ROOT / "examples"))
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv,needle", CLI_CASES, ids=[a[0][0] for a in CLI_CASES])
def test_maml_nav_cli_rejects_bad_flags_before_training(tmp_path, monkeypatch, capsys, argv, needle):
    # parse_args runs every check that main() relies on, before any training: calling it alone
    # shows that a bad flag ends in an argparse usage error (exit 2), not a traceback later.
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    example = _load_example("maml_nav")
    monkeypatch.setattr(sys, "argv", ["maml_nav.py", *argv])
    with pytest.raises(SystemExit) as info:
        example.parse_args()
    assert info.value.code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was written


def test_maml_nav_cli_accepts_good_flags(tmp_path, monkeypatch):
    example = _load_example("maml_nav")
    monkeypatch.setattr(sys, "argv", ["maml_nav.py", "--eval-lrs", "0.1", "0.05", "--output", str(tmp_path)])
    args = example.parse_args()
    assert args.config.meta_batch_size == 20 and args.eval_lrs == (0.1, 0.05)


# ============================================================================= runner configs
# Every agent runner's config (and the runner base's common fields) refuses, with an error that
# names the field: settings under which learning never starts, a bool or a string where a number
# or a flag is meant, non-finite numbers, probabilities outside [0, 1], a float where a count is
# meant. Each case is (id, config class, settings, exception type, regex).
_RUNNER_CONFIG_CASES = [
    # the runner base's fields, on every config
    ("base-iterations-string", runners.RL2Config, dict(iterations="100"), TypeError, "iterations must be an int"),
    ("base-iterations-zero", runners.RainbowConfig, dict(iterations=0), ValueError, "iterations must be an int in"),
    ("base-seed-float", runners.DDPGConfig, dict(seed=1.5), TypeError, "seed must be an int"),
    ("base-device-number", runners.OptionCriticConfig, dict(device=0), TypeError, "device must be a str"),
    ("base-checkpoint-every-bool", runners.DeepOptionCriticConfig, dict(checkpoint_every=True), TypeError,
     "checkpoint_every must be an int"),
    # Rainbow
    ("rainbow-learning-never-starts", runners.RainbowConfig, dict(iterations=500, learning_starts=500), ValueError,
     r"learning_starts \(500\) must be below iterations \* num_envs"),
    ("rainbow-learning-never-starts-envs", runners.RainbowConfig, dict(iterations=100, num_envs=4, learning_starts=400),
     ValueError, "learning_starts"),
    ("rainbow-batch-over-buffer", runners.RainbowConfig, dict(batch_size=128, buffer_size=64), ValueError,
     r"batch_size \(128\) must not exceed buffer_size"),
    ("rainbow-batch-over-run", runners.RainbowConfig, dict(iterations=50, learning_starts=10, batch_size=64), ValueError,
     "batch_size .* iterations"),
    ("rainbow-gamma-bool", runners.RainbowConfig, dict(gamma=True), TypeError, "gamma must be a number"),
    ("rainbow-gamma-string", runners.RainbowConfig, dict(gamma="0.99"), TypeError, "gamma must be a number"),
    ("rainbow-beta0-above-one", runners.RainbowConfig, dict(beta0=1.5), ValueError, r"beta0 must be a finite number in \[0, 1\]"),
    ("rainbow-alpha-negative", runners.RainbowConfig, dict(alpha=-0.1), ValueError, "alpha"),
    ("rainbow-lr-nan", runners.RainbowConfig, dict(lr=float("nan")), ValueError, "lr must be a finite number"),
    ("rainbow-max-grad-norm-inf", runners.RainbowConfig, dict(max_grad_norm=float("inf")), ValueError, "max_grad_norm"),
    ("rainbow-noisy-string", runners.RainbowConfig, dict(noisy="false"), TypeError, "noisy must be a bool"),
    ("rainbow-n-step-float", runners.RainbowConfig, dict(n_step=3.0), TypeError, "n_step must be an int"),
    ("rainbow-v-max-inf", runners.RainbowConfig, dict(v_max=float("inf")), ValueError, "v_max"),
    ("rainbow-network-unknown", runners.RainbowConfig, dict(network="resnet"), ValueError, "network must be one of"),
    ("rainbow-num-envs-zero", runners.RainbowConfig, dict(num_envs=0), ValueError, "num_envs must be an int in"),
    ("rainbow-num-envs-float", runners.RainbowConfig, dict(num_envs=2.0), TypeError, "num_envs must be an int"),
    ("rainbow-iterations-float", runners.RainbowConfig, dict(iterations=1e5), TypeError, "iterations must be an int"),
    ("rainbow-train-every-zero", runners.RainbowConfig, dict(train_every=0), ValueError, "train_every must be an int in"),
    ("rainbow-target-update-negative", runners.RainbowConfig, dict(target_update=-500), ValueError,
     "target_update must be an int in"),
    ("rainbow-buffer-under-batch", runners.RainbowConfig, dict(buffer_size=100, batch_size=128), ValueError,
     r"batch_size \(128\) must not exceed buffer_size \(100\)"),
    ("rainbow-compile-string", runners.RainbowConfig, dict(compile="yes"), TypeError, "compile must be a bool"),
    ("rainbow-dedup-frames-int", runners.RainbowConfig, dict(dedup_frames=1), TypeError, "dedup_frames must be a bool"),
    ("rainbow-frame-padding-unknown", runners.RainbowConfig, dict(frame_padding="edge"), ValueError,
     "frame_padding must be one of"),
    ("rainbow-huber-delta-zero", runners.RainbowConfig, dict(huber_delta=0.0), ValueError, "huber_delta"),
    # DDPG / TD3
    ("ddpg-tau-inf", runners.DDPGConfig, dict(tau=float("inf")), ValueError, "tau"),
    ("ddpg-gamma-string", runners.DDPGConfig, dict(gamma="0.99"), TypeError, "gamma must be a number"),
    ("ddpg-save-replay-string", runners.DDPGConfig, dict(save_replay="yes"), TypeError, "save_replay must be a bool"),
    ("ddpg-sigma-nan", runners.DDPGConfig, dict(exploration_sigma=float("nan")), ValueError, "exploration_sigma"),
    ("ddpg-hidden-zero", runners.DDPGConfig, dict(hidden=(64, 0)), ValueError, r"hidden\[1\]"),
    ("ddpg-actor-lr-bool", runners.DDPGConfig, dict(actor_lr=True), TypeError, "actor_lr must be a number"),
    ("ddpg-policy-delay-float", runners.DDPGConfig, dict(policy_delay=2.0), TypeError, "policy_delay must be an int"),
    # tabular Option-Critic
    ("oc-epsilon-above-one", runners.OptionCriticConfig, dict(epsilon=1.5), ValueError, "epsilon"),
    ("oc-gamma-bool", runners.OptionCriticConfig, dict(gamma=True), TypeError, "gamma must be a number"),
    ("oc-xi-inf", runners.OptionCriticConfig, dict(xi=float("inf")), ValueError, "xi"),
    ("oc-switch-goal-float", runners.OptionCriticConfig, dict(switch_goal_at=2.5), TypeError, "switch_goal_at must be an int"),
    ("oc-switch-goal-after-run", runners.OptionCriticConfig, dict(iterations=10, switch_goal_at=10), ValueError,
     "switch_goal_at"),
    ("oc-num-runs-zero", runners.OptionCriticConfig, dict(num_runs=0), ValueError, "num_runs"),
    ("oc-initial-goal-outside", runners.OptionCriticConfig, dict(initial_goal=104), ValueError, "initial_goal"),
    # deep Option-Critic
    ("deep-oc-batch-over-replay", runners.DeepOptionCriticConfig, dict(batch_size=512, replay_size=256), ValueError,
     r"batch_size \(512\) must not exceed replay_size"),
    ("deep-oc-learning-never-starts", runners.DeepOptionCriticConfig, dict(learning_starts=5000, replay_size=1000),
     ValueError, r"learning_starts \(5000\) must not exceed replay_size"),
    ("deep-oc-epsilon-end-negative", runners.DeepOptionCriticConfig, dict(epsilon_end=-0.1), ValueError, "epsilon_end"),
    ("deep-oc-tensorboard-string", runners.DeepOptionCriticConfig, dict(tensorboard="no"), TypeError,
     "tensorboard must be a bool"),
    ("deep-oc-critic-lr-nan", runners.DeepOptionCriticConfig, dict(critic_lr=float("nan")), ValueError, "critic_lr"),
    ("deep-oc-entropy-bool", runners.DeepOptionCriticConfig, dict(entropy_coef=True), TypeError,
     "entropy_coef must be a number"),
    # RL²
    ("rl2-gamma-above-one", runners.RL2Config, dict(gamma=1.5), ValueError, r"gamma must be a finite number in \[0, 1\]"),
    ("rl2-gae-lambda-nan", runners.RL2Config, dict(gae_lambda=float("nan")), ValueError, "gae_lambda"),
    ("rl2-clip-eps-zero", runners.RL2Config, dict(clip_eps=0.0), ValueError, "clip_eps"),
    ("rl2-max-grad-norm-inf", runners.RL2Config, dict(max_grad_norm=float("inf")), ValueError, "max_grad_norm"),
    ("rl2-lr-bool", runners.RL2Config, dict(lr=True), TypeError, "lr must be a number"),
    ("rl2-compile-string", runners.RL2Config, dict(compile="yes"), TypeError, "compile must be a bool"),
    ("rl2-trials-float", runners.RL2Config, dict(trials_per_iteration=256.0), TypeError, "trials_per_iteration must be an int"),
]


@pytest.mark.parametrize("config_class,settings,error,pattern", [c[1:] for c in _RUNNER_CONFIG_CASES],
                         ids=[c[0] for c in _RUNNER_CONFIG_CASES])
def test_runner_configs_reject_bad_settings(config_class, settings, error, pattern):
    with pytest.raises(error, match=pattern):
        config_class(**settings)


def test_runner_base_rejects_mismatched_state_trees():
    params = {"w": torch.zeros(3), "b": torch.zeros(())}
    with pytest.raises(ValueError, match=r"params\['w'\]: saved shape \(4,\)"):
        runners.restore_like({"w": torch.zeros(4), "b": torch.zeros(())}, params, "params")
    with pytest.raises(ValueError, match="params: the saved state has 1 leaves, the live one 2"):
        runners.restore_like({"w": torch.zeros(3)}, params, "params")
    with pytest.raises(ValueError, match=r"params\['b'\]: saved dtype torch.int64"):
        runners.restore_like({"w": torch.zeros(3), "b": torch.zeros((), dtype=torch.int64)}, params, "params")


# ============================================================================= pure layers (issue 24)
# envs (every task family and the rollouts), nn templates, rl math, tree / optim, the replay
# buffers and sampler, RL², discrete MAML and the supervised learners: shapes that would only
# broadcast, a float where an index is meant, a string or bool where a number or flag is meant,
# values out of range (probabilities, 0/1 flags, non-finite numbers), trees with other keys, and
# discrete actions out of range. Each case is (id, call, exception type, regex naming the argument).
def _pure_layer_cases():
    from functional_metarl.envs import (BanditTask, BernoulliBandits, FourRooms, FourRoomsNoise, NavTask, NoNoise,
                                        TabularMDP)

    gen = torch.Generator().manual_seed(0)
    nav_state, _ = NAV.reset(envs.repeat_tasks(_tasks(), 3), NoNoise())  # position [2, 3, 2]
    bandits = BernoulliBandits(3, 4)
    b_tasks = bandits.sample_tasks(2, gen)
    b_state, _ = bandits.reset(b_tasks, None)
    mdp = TabularMDP(1, num_states=3, num_actions=2, horizon=2)
    m_tasks = mdp.sample_tasks(2, gen)
    m_state, _ = mdp.reset(m_tasks, None)
    rooms = FourRooms()
    r_task = rooms.task(torch.tensor([62, 3]))
    r_state, _ = rooms.reset(r_task, FourRoomsNoise(start=torch.rand(2)))
    cat1 = nn.categorical_policy(1, 3, hidden=(4,))
    cat1_noise = envs.sample_noise(1, 2, 2, 3, gen, distribution=fm.distributions.CATEGORICAL)
    gru = nn.gru_actor_critic(1, 3, hidden=4)
    rl2_noise = meta.sample_rl2_noise(bandits, 2, 1, gen)
    learner = meta.maml(_mse, optim.sgd(0.1), 1)
    support, query = _sine()
    tree = {"w": torch.zeros(3), "b": torch.zeros(())}
    buf = runners.UniformReplay(8, num_actions=2)
    per = runners.PrioritizedReplay(8)
    per.add(torch.zeros(2, 2), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 2), torch.zeros(2))
    batch = dict(obs=torch.zeros(2, 2), action=torch.tensor([0, 1]), reward=torch.zeros(2), next_obs=torch.zeros(2, 2))
    q = torch.zeros(3)
    return [
        # envs: task families
        ("nav-goal-broadcasts", lambda: NAV.step(nav_state, torch.zeros(2, 3, 2), _tasks(), NoNoise()),
         ValueError, r"tasks.goal expected shape \(2, 3, 2\)"),
        ("nav-action-broadcasts", lambda: NAV.step(nav_state, torch.zeros(1, 3, 2), envs.repeat_tasks(_tasks(), 3),
                                                   NoNoise()), ValueError, r"action expected shape \(2, 3, 2\)"),
        ("nav-horizon-string", lambda: Navigation2D(horizon="10"), TypeError, "horizon must be an int"),
        ("nav-action-scale-nan", lambda: Navigation2D(action_scale=float("nan")), ValueError, "action_scale"),
        ("nav-num-steps-float", lambda: NAV.sample_noise(5.0, (2,)), TypeError, "num_steps must be an int"),
        ("bandit-action-float", lambda: bandits.step(b_state, torch.zeros(2), b_tasks, torch.rand(2)),
         TypeError, "action must be an integer Tensor"),
        ("bandit-action-out-of-range", lambda: bandits.step(b_state, torch.tensor([0, 3]), b_tasks, torch.rand(2)),
         ValueError, r"action must hold indices in \[0, 3\)"),
        ("bandit-noise-broadcasts", lambda: bandits.step(b_state, torch.tensor([0, 1]), b_tasks, torch.rand(1)),
         ValueError, r"noise expected shape \(2,\)"),
        ("bandit-means-not-probabilities", lambda: bandits.task(torch.tensor([0.2, 1.5, 0.3])), ValueError,
         r"means must lie in \[0, 1\]"),
        ("bandit-num-arms-bool", lambda: BernoulliBandits(num_arms=True), TypeError, "num_arms must be an int"),
        ("mdp-reward-std-bool", lambda: TabularMDP(reward_std=True), TypeError, "reward_std must be a number"),
        ("mdp-reward-mean-nan", lambda: mdp.task(torch.full((3, 2), float("nan")), torch.full((3, 2, 3), 1 / 3)),
         ValueError, "reward_mean must be finite"),
        ("mdp-noise-wrong-type", lambda: mdp.step(m_state, torch.tensor([0, 1]), m_tasks, torch.rand(2)),
         TypeError, "noise must be a MDPNoise"),
        ("mdp-action-out-of-range", lambda: mdp.step(m_state, torch.tensor([0, 2]), m_tasks,
                                                     fm.envs.MDPNoise(torch.rand(2), torch.randn(2))),
         ValueError, r"action must hold indices in \[0, 2\)"),
        ("rooms-fail-prob-above-one", lambda: FourRooms(fail_prob=1.5), ValueError, "fail_prob"),
        ("rooms-one-hot-string", lambda: FourRooms(one_hot_obs="yes"), TypeError, "one_hot_obs must be a bool"),
        ("rooms-goal-float", lambda: rooms.task(3.0), TypeError, "goal must be an int"),
        ("rooms-goal-out-of-range", lambda: rooms.task(torch.tensor([200])), ValueError, r"goal must hold indices"),
        ("rooms-action-out-of-range", lambda: rooms.step(r_state, torch.tensor([0, 4]), r_task,
                                                         FourRoomsNoise(move=torch.rand(2, 2))),
         ValueError, r"action must hold indices in \[0, 4\)"),
        ("rooms-raw-noise", lambda: rooms.step(r_state, torch.tensor([0, 1]), r_task, torch.rand(2, 2)),
         TypeError, "noise must be a FourRoomsNoise"),
        ("sine-num-tasks-float", lambda: SineRegression().sample_tasks(2.0, gen), TypeError, "num_tasks must be an int"),
        # envs: rollouts and the protocol helpers
        ("rollout-env-noise-length", lambda: envs.rollout(cat1.init(0), b_tasks, cat1_noise, bandits, cat1,
                                                          env_noise=bandits.sample_noise(3, (2, 2), gen)),
         ValueError, "env_noise leaves expected shape"),
        ("rollout-gaussian-on-discrete-env", lambda: envs.rollout(GAUSS_PARAMS, b_tasks, _noise(act=3, horizon=1),
                                                                  bandits, GAUSS), TypeError, "distribution"),
        ("rollout-not-a-family", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), _noise(), object(), GAUSS),
         TypeError, "env must be a TaskFamily"),
        ("rollout-params-per-task-string", lambda: envs.rollout(GAUSS_PARAMS, _tasks(), _noise(), NAV, GAUSS,
                                                                params_per_task="no"),
         TypeError, "params_per_task must be a bool"),
        ("repeat-tasks-zero", lambda: envs.repeat_tasks(_tasks(), 0), ValueError, "num_episodes"),
        ("bandit-baseline-method", lambda: envs.bandit_baseline(bandits, b_tasks, "ucb", torch.rand(4, 2)),
         ValueError, "method must be one of"),
        ("bandit-baseline-ucb-c-nan", lambda: envs.bandit_baseline(bandits, b_tasks, "ucb1", torch.rand(4, 2),
                                                                   ucb_c=float("nan")), ValueError, "ucb_c"),
        ("gittins-gamma-one", lambda: envs.gittins_indices(1.0, 10), ValueError, r"gamma must be a finite number in \(0, 1\)"),
        ("tune-gittins-gamma-above-one", lambda: envs.tune_gittins_gamma(bandits, b_tasks, torch.rand(4, 2),
                                                                         gammas=(0.5, 1.5)), ValueError, r"gammas\[1\]"),
        # nn templates
        ("mlp-hidden-float", lambda: nn.mlp(2, 2, hidden=(8.0,)), TypeError, r"hidden\[0\] must be an int"),
        ("mlp-activation-unknown", lambda: nn.mlp(2, 2, activation="gelu2"), ValueError, "activation must be one of"),
        ("gaussian-init-std-zero", lambda: nn.gaussian_policy(2, 2, init_std=0.0), ValueError, "init_std"),
        ("rainbow-noisy-string", lambda: nn.rainbow_mlp(4, 2, noisy="false"), TypeError, "noisy must be a bool"),
        ("rainbow-cnn-arch", lambda: nn.rainbow_cnn(arch="resnet"), ValueError, "arch must be one of"),
        ("q-critic-action-layer", lambda: nn.q_critic(3, 1, action_layer=2), ValueError, "action_layer"),
        ("actor-final-init-negative", lambda: nn.deterministic_actor(3, 1, [-1.0], [1.0], final_init=-1.0),
         ValueError, "final_init"),
        ("gru-one-action", lambda: nn.gru_actor_critic(2, 1), ValueError, "num_actions"),
        ("option-critic-net-log-std-nan", lambda: nn.option_critic_net(3, 2, num_actions=2, init_log_std=float("nan")),
         ValueError, "init_log_std"),
        # rl math
        ("polyak-keys-differ", lambda: rl.polyak_update(tree, {"w": torch.zeros(3)}, 0.5), ValueError, "keys differ"),
        ("polyak-tau-string", lambda: rl.polyak_update(tree, tree, "0.5"), TypeError, "tau must be a number"),
        ("returns-gamma-bool", lambda: rl.discounted_returns(_tb(), _ones(), True), TypeError, "gamma must be a number"),
        ("ppo-clip-eps-nan", lambda: rl.ppo_clip_loss(_tb(), _tb(), _tb(), _ones(), float("nan")), ValueError, "clip_eps"),
        ("n-step-n-float", lambda: rl.n_step_returns(torch.zeros(5), torch.zeros(5), torch.zeros(5), 2.0, 0.9),
         TypeError, "n must be an int"),
        ("q-learning-action-float", lambda: rl.q_learning_loss(q, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.9),
                                                               q, q), TypeError, "a_tm1 must be an integer Tensor"),
        ("c51-action-float", lambda: rl.categorical_double_q_loss(torch.linspace(-1, 1, 5), torch.zeros(3, 5),
                                                                  torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.9),
                                                                  torch.zeros(3, 5), q),
         TypeError, "a_tm1 must be an integer Tensor"),
        ("cg-iters-zero", lambda: rl.conjugate_gradient(lambda v: v, torch.ones(3), iters=0), ValueError, "iters"),
        ("line-search-ratio-one", lambda: rl.backtracking_line_search(lambda x: (x.sum(), x.sum()), torch.ones(2),
                                                                      torch.ones(2), 0.0, 0.01, backtrack_ratio=1.0),
         ValueError, "backtrack_ratio"),
        ("baseline-reg-ladder-float", lambda: rl.fit_linear_baseline(torch.zeros(T, B, 2), _tb(), _ones(), reg_ladder=0.5),
         TypeError, "reg_ladder must be an int"),
        ("ou-sigma-negative", lambda: rl.ou_noise_step(torch.zeros(2), torch.zeros(2), sigma=-1.0), ValueError, "sigma"),
        ("policy-delay-zero", lambda: rl.is_policy_update_step(3, 0), ValueError, "policy_delay"),
        # tree / optim
        ("tree-add-keys-differ", lambda: fm.tree.tree_add(tree, {"w": torch.zeros(3), "c": torch.zeros(())}),
         ValueError, "keys differ"),
        ("tree-dot-leaf-broadcasts", lambda: fm.tree.tree_dot(tree, {"w": torch.zeros(1), "b": torch.zeros(())}),
         ValueError, r"b\['w'\] expected shape \(3,\)"),
        ("apply-updates-missing-key", lambda: optim.apply_updates(tree, {"w": torch.zeros(3)}), ValueError, "updates"),
        ("adam-b1-one", lambda: optim.adam(b1=1.0), ValueError, "b1"),
        ("sgd-lr-string", lambda: optim.sgd("0.1"), TypeError, "lr must be a number"),
        # replay buffers and the vector sampler
        ("frame-replay-capacity-zero", lambda: FrameStackReplay(0, (4, 8, 8)), ValueError, "capacity must be an int in"),
        ("frame-replay-num-envs-zero", lambda: FrameStackReplay(8, (4, 8, 8), num_envs=0), ValueError,
         "num_envs must be an int in"),
        ("frame-replay-stack-2d", lambda: FrameStackReplay(8, (8, 8)), ValueError, r"stack_shape must be \(K, H, W\)"),
        ("frame-replay-sample-over-size", lambda: FrameStackReplay(8, (2, 3, 3)).sample(4, gen), ValueError,
         "cannot sample a batch of 4"),
        ("replay-done-not-0-1", lambda: buf.add(**batch, done=torch.tensor([0.0, 0.5])), ValueError, "done must hold only 0 and 1"),
        ("replay-action-float", lambda: buf.add(**{**batch, "action": torch.tensor([0.0, 1.0])}, done=torch.zeros(2)),
         TypeError, "action must be an integer Tensor"),
        ("replay-capacity-zero", lambda: runners.UniformReplay(0), ValueError, "capacity"),
        ("per-beta-above-one", lambda: per.sample(1, gen, beta=1.5), ValueError, "beta"),
        ("per-slots-out-of-range", lambda: per.update_priorities(torch.tensor([0, 5]), torch.ones(2)),
         ValueError, r"slots must hold indices in \[0, 2\)"),
        ("per-alpha-string", lambda: runners.PrioritizedReplay(8, alpha="0.5"), TypeError, "alpha must be a number"),
        ("sum-tree-index-out-of-range", lambda: runners.SumTree(4).update(torch.tensor([4]), torch.ones(1)),
         ValueError, r"index must hold indices in \[0, 4\)"),
        ("nstep-terminated-not-0-1", lambda: runners.NStepAggregator(2, 0.9, 2).push(
            torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2, 1), torch.tensor([0, 2]), torch.zeros(2)),
         ValueError, "terminated must hold only 0 and 1"),
        ("sampler-make-env-not-callable", lambda: runners.TaskVectorSampler(None, 2, 2, 5), TypeError, "make_env"),
        # RL², discrete MAML
        ("rl2-noise-epochs-negative", lambda: meta.sample_rl2_noise(bandits, 2, -1), ValueError, "epochs"),
        ("rl2-rollout-continuous-env", lambda: meta.rl2_rollout(gru.init(0), _tasks(), NoNoise(), torch.rand(5, 2, 3),
                                                                NAV, gru), TypeError, "discrete actions"),
        ("rl2-ppo-flag-string", lambda: meta.rl2_train_step(
            gru.init(0), optim.adam(1e-3).init(gru.init(0)), b_tasks, rl2_noise, bandits, gru, optim.adam(1e-3),
            config=meta.PPOConfig(epochs=1, num_minibatches=1, normalize_advantages="yes")),
         TypeError, "config.normalize_advantages must be a bool"),
        ("discrete-maml-num-pre-zero", lambda: meta.split_trial_rollouts(
            cat1.init(0), b_tasks, rl2_noise.env, rl2_noise.gumbel_u, bandits, cat1, optim.sgd(0.1), num_pre=0),
         ValueError, "num_pre"),
        ("categorical-episodes-flag-string", lambda: meta.categorical_episodes(
            cat1.init(0), b_tasks, torch.rand(1, 2, 2), torch.rand(1, 2, 2, 3), bandits, cat1, params_per_task="no"),
         TypeError, "params_per_task must be a bool"),
        # supervised meta-learning
        ("maml-loss-first-order-string", lambda: meta.maml_loss(SINE_PARAMS, support, query, _mse, _mse, optim.sgd(0.1),
                                                                first_order="no"), TypeError, "first_order must be a bool"),
        ("maml-loss-inner-opt", lambda: meta.maml_loss(SINE_PARAMS, support, query, _mse, _mse, "sgd"),
         TypeError, "inner_opt must be a GradientTransformation"),
        ("learner-chunk-size-float", lambda: meta.maml(_mse, optim.sgd(0.1), chunk_size=2.0), TypeError,
         "chunk_size must be an int"),
        ("learner-compile-string", lambda: meta.maml(_mse, optim.sgd(0.1), compile="yes"), TypeError,
         "compile must be a bool"),
        ("adaptation-losses-steps-float", lambda: meta.adaptation_losses(learner, _mse, learner.init(SINE_PARAMS),
                                                                         support, query, steps=(0, 1.5)),
         TypeError, r"steps\[i\] must be an int"),
        ("last-layer-empty", lambda: meta.last_layer({}), ValueError, "params must be a non-empty dict"),
        ("meta-update-outer-opt", lambda: meta.meta_update(learner, "adam", learner.init(SINE_PARAMS), (), support, query),
         TypeError, "outer_opt must be a GradientTransformation"),
        # late additions: replay gather / importance weights, template init dtype, noisy-net noise, params dicts
        ("replay-gather-slot-out-of-range", lambda: per.gather(torch.tensor([5])), ValueError,
         r"slots must hold indices in \[0, 2\)"),
        ("importance-weights-beta-above-one", lambda: runners.importance_weights(torch.full((2,), 0.5), 2, 1.5),
         ValueError, "beta"),
        ("template-init-integer-dtype", lambda: MLP.init(0, dtype=torch.long), TypeError, "dtype must be a floating-point"),
        ("factorised-noise-2d", lambda: nn.factorised_noise(torch.zeros(2, 2), torch.zeros(3)), ValueError,
         "eps_in must have 1 axes"),
        ("params-dict-empty", lambda: fm.checks.params_dict({}, "params"), ValueError, "params must be a non-empty dict"),
    ]


PURE_LAYER_CASES = _pure_layer_cases()


@pytest.mark.parametrize("case", PURE_LAYER_CASES, ids=[c[0] for c in PURE_LAYER_CASES])
def test_pure_layers_reject_bad_input(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


# ============================================================================= MAML-RL layer (issue 24)
# The meta-steps, estimators, surrogates and batches of the redesigned MAML-RL layer, the MAML
# trainer's config and samplers, the distributions and the checks themselves: wrong kinds (a
# string or bool where a value, number or flag is meant, a float where a count is meant),
# values out of range, masks that are not 0/1, mismatched batches. (id, call, exception, regex).
def _maml_layer_cases():
    from functional_metarl import checks, distributions
    from functional_metarl.envs import BernoulliBandits

    batches = _rl_batches()
    inner = optim.sgd(0.1)
    step = meta.trpo(GAUSS, inner)
    episodes = _episodes()
    return [
        ("meta-trpo-estimator-string", lambda: meta.trpo(GAUSS, inner, estimator="lvc"), TypeError,
         "estimator must be an? Estimator"),
        ("meta-trpo-steps-bool", lambda: meta.trpo(GAUSS, inner, steps=True), TypeError, "steps must be an int"),
        ("meta-trpo-steps-float", lambda: meta.trpo(GAUSS, inner, steps=1.0), TypeError, "steps must be an int"),
        ("meta-trpo-first-order-string", lambda: meta.trpo(GAUSS, inner, first_order="false"), TypeError,
         "first_order must be a bool"),
        ("meta-trpo-non-policy", lambda: meta.trpo(MLP, inner), ValueError, "policy must be a policy template"),
        ("meta-trpo-inner-opt-string", lambda: meta.trpo(GAUSS, "sgd"), TypeError, "inner_opt must be"),
        ("meta-trpo-train-tuple-length", lambda: step.update(GAUSS_PARAMS, (), (batches, batches), batches),
         ValueError, "2 per-step inner batches for 1 inner steps"),
        ("meta-trpo-train-kind", lambda: step.update(GAUSS_PARAMS, (), [1, 2], batches), TypeError,
         "train must be an RLBatch or a tuple of RLBatches"),
        ("meta-trpo-valid-kind", lambda: step.update(GAUSS_PARAMS, (), batches, "valid"), TypeError,
         "valid must be a RLBatch"),
        ("meta-trpo-valid-missing-task-axis",
         lambda: step.update(GAUSS_PARAMS, (), batches, meta.RLBatch(*(x[0] for x in batches))), ValueError,
         r"valid.mask expected shape \[N, T, E\]"),
        ("meta-emaml-without-post-rewards",
         lambda: meta.trpo(GAUSS, inner, estimator=meta.E_MAML).update(GAUSS_PARAMS, (), batches,
                                                                     meta.RLBatch(*batches[:4])),
         ValueError, "needs the post-update rewards"),
        ("meta-gradient-meta-opt-kind", lambda: meta.gradient(GAUSS, inner, optim.adam), TypeError, "meta_opt"),
        ("meta-promp-config-kind", lambda: meta.promp(GAUSS, inner, optim.adam(), config={"epochs": 2}), TypeError,
         "config must be a ProMPConfig"),
        ("meta-promp-meta-grad-given",
         lambda: meta.promp(GAUSS, inner, optim.adam()).update(GAUSS_PARAMS, None, batches, batches, meta_grad=1),
         ValueError, "meta_grad"),
        ("meta-promp-state-kind",
         lambda: meta.promp(GAUSS, inner, optim.adam()).update(GAUSS_PARAMS, optim.adam().init(GAUSS_PARAMS), batches,
                                                               batches), TypeError, "state must be a ProMPState"),
        ("meta-estimator-named-unknown", lambda: meta.estimator_named("dcie"), ValueError, "estimator must be one of"),
        ("meta-estimator-named-number", lambda: meta.estimator_named(3), TypeError, "estimator must be a str"),
        ("meta-inner-loss-estimator-string", lambda: meta.inner_loss(GAUSS_PARAMS, meta.RLBatch(*(x[0] for x in batches)),
                                                                     GAUSS, estimator="dice"), TypeError, "estimator"),
        ("meta-surrogate-first-order-int",
         lambda: meta.maml_surrogate(GAUSS_PARAMS, batches, batches, None, GAUSS, inner, first_order=1), TypeError,
         "first_order must be a bool"),
        ("meta-adapt-rl-train-kind", lambda: meta.adapt_rl(GAUSS_PARAMS, "train", GAUSS, inner), TypeError,
         "train must be an RLBatch"),
        ("meta-policy-distribution-flag", lambda: meta.policy_distribution(GAUSS_PARAMS, torch.zeros(3, 2), GAUSS,
                                                                          params_per_task="no"), TypeError,
         "params_per_task must be a bool"),
        ("meta-batches-mask-not-binary", lambda: meta.make_rl_batches(_with(episodes, mask=episodes.mask * 0.5)),
         ValueError, "episodes.mask must hold only 0 and 1"),
        ("meta-batches-gamma-string", lambda: meta.make_rl_batches(episodes, gamma="0.99"), TypeError,
         "gamma must be a number"),
        ("meta-batches-normalize-int", lambda: meta.make_rl_batches(episodes, normalize=1), TypeError,
         "normalize must be a bool"),
        ("meta-batches-obs-nan",
         lambda: meta.make_rl_batches(_with(episodes, obs=episodes.obs * float("nan"))), ValueError,
         "episodes.obs must be finite"),
        ("meta-final-reward-reference-bool", lambda: meta.scale_by_final_reward(batches, True), TypeError,
         "reference must be a number"),
        # the MAML trainer's config and samplers
        ("maml-config-estimator-number", lambda: runners.MAMLConfig(estimator=3), TypeError, "estimator must be one of"),
        ("maml-config-meta-optimizer", lambda: runners.MAMLConfig(meta_optimizer="sgd"), ValueError,
         "meta_optimizer must be one of"),
        ("maml-config-gamma-string", lambda: runners.MAMLConfig(gamma="0.99"), TypeError, "gamma must be a number"),
        ("maml-config-inner-lr-inf", lambda: runners.MAMLConfig(inner_lr=float("inf")), ValueError, "inner_lr"),
        ("maml-config-hidden-float", lambda: runners.MAMLConfig(hidden=(64, 32.0)), TypeError, r"hidden\[1\]"),
        ("maml-config-mean-bound-nan", lambda: runners.MAMLConfig(mean_bound=float("nan")), ValueError, "mean_bound"),
        ("maml-trainer-sampler-kind", lambda: runners.MAMLTrainer(runners.MAMLConfig(device="cpu"), sampler=NAV),
         TypeError, "sampler must be a MAMLSampler"),
        ("maml-trainer-meta-step-kind",
         lambda: runners.MAMLTrainer(runners.MAMLConfig(device="cpu"), meta_step=lambda *a: a), TypeError,
         "meta_step must be a MetaStep"),
        ("maml-trainer-discrete-mean-bound",
         lambda: runners.MAMLTrainer(runners.MAMLConfig(horizon=1, mean_bound=1.0, device="cpu"),
                                     sampler=runners.SplitTrialSampler(BernoulliBandits(3, 4))), ValueError,
         "mean_bound"),
        ("split-trial-env-kind", lambda: runners.SplitTrialSampler(NAV), TypeError, "trials"),
        ("split-trial-num-pre-float", lambda: runners.SplitTrialSampler(BernoulliBandits(3, 4), num_pre=1.0), TypeError,
         "num_pre must be an int"),
        ("pure-sampler-discrete-family", lambda: runners.PureFamilySampler(BernoulliBandits(3, 4)), ValueError,
         "continuous actions"),
        ("maml-evaluate-max-steps-float",
         lambda: runners.MAMLTrainer(runners.MAMLConfig(device="cpu", hidden=(4,))).evaluate(max_steps=1.0), TypeError,
         "max_steps must be an int"),
        ("maml-evaluate-inner-lrs-bool",
         lambda: runners.MAMLTrainer(runners.MAMLConfig(device="cpu", hidden=(4,))).evaluate(inner_lrs=(True,)),
         TypeError, r"inner_lrs\[0\] must be a number"),
        # distributions, optimizers and the checks
        ("functional-distribution-string", lambda: nn.Functional(lambda: torch.nn.Linear(1, 1), 1,
                                                                 distribution="gaussian"), TypeError, "distribution"),
        ("sample-noise-distribution-string", lambda: envs.sample_noise(5, 2, 3, 2, None, distribution="categorical"),
         TypeError, "distribution"),
        ("optim-chain-empty", lambda: optim.chain(), ValueError, "at least one"),
        ("optim-chain-kind", lambda: optim.chain(optim.sgd(0.1), "adam"), TypeError, r"transforms\[1\]"),
        ("optim-clip-negative", lambda: optim.clip_by_global_norm(-1.0), ValueError, "max_norm"),
        ("optim-clip-bool", lambda: optim.clip_by_global_norm(True), TypeError, "max_norm"),
        ("checks-one-of-kind", lambda: checks.one_of(1, "mode", ("a", "b")), TypeError, "mode must be one of"),
        ("checks-same-structure", lambda: checks.same_structure({"a": torch.zeros(1)}, "updates",
                                                                {"b": torch.zeros(1)}, "params"), ValueError,
         "updates must have the keys of params"),
        ("distributions-gaussian-shape", lambda: distributions.GAUSSIAN.log_prob((torch.zeros(3, 2), torch.zeros(2)),
                                                                                torch.zeros(3, 3)), ValueError,
         "x expected a shape"),
    ]


MAML_LAYER_CASES = _maml_layer_cases()


@pytest.mark.parametrize("case", MAML_LAYER_CASES, ids=[c[0] for c in MAML_LAYER_CASES])
def test_maml_layer_rejects_bad_input(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


# ============================================================================= RL² agent options (issue 28)
# The new RL2Config fields, the GRU template's options, PPO's KL target, the memory gauge and the
# baselines' priors: a value outside its choices, the wrong kind, non-finite or non-positive
# numbers, and shapes that do not match. Each case is (id, call, exception type, regex naming it).
def _rl2_issue28_cases():
    from functional_metarl.envs import BernoulliBandits, TabularMDP

    bandits, mdp = BernoulliBandits(3, 4), TabularMDP(1, num_states=3, num_actions=2, horizon=2)
    gen = torch.Generator().manual_seed(0)
    b_tasks, m_tasks = bandits.sample_tasks(2, gen), mdp.sample_tasks(2, gen)
    b_noise, m_noise = bandits.sample_noise(4, (2,), gen), mdp.sample_noise(2, (2,), gen)
    cfg = lambda **kw: runners.RL2Config(device="cpu", **kw)  # noqa: E731
    gru = nn.gru_actor_critic
    return [
        ("rl2-value-network-unknown", lambda: cfg(value_network="twin"), ValueError, "value_network must be one of"),
        ("rl2-cell-init-unknown", lambda: cfg(cell_init="xavier"), ValueError, "cell_init must be one of"),
        ("rl2-activation-unknown", lambda: cfg(activation="gelu"), ValueError, "activation must be one of"),
        ("rl2-weight-norm-string", lambda: cfg(weight_norm="yes"), TypeError, "weight_norm must be a bool"),
        ("rl2-update-gate-bias-string", lambda: cfg(update_gate_bias="1"), TypeError, "update_gate_bias must be a number"),
        ("rl2-update-gate-bias-nan", lambda: cfg(update_gate_bias=float("nan")), ValueError, "update_gate_bias"),
        ("rl2-prev-state-input-int", lambda: cfg(prev_state_input=1), TypeError, "prev_state_input must be a bool"),
        ("rl2-target-kl-zero", lambda: cfg(target_kl=0.0), ValueError, "target_kl"),
        ("rl2-target-kl-bool", lambda: cfg(target_kl=True), TypeError, "target_kl must be a number"),
        ("ppo-target-kl-negative", lambda: meta.rl2_train_step(
            gru(1, 3, hidden=4).init(0), optim.adam(1e-3).init(gru(1, 3, hidden=4).init(0)), b_tasks,
            meta.sample_rl2_noise(bandits, 2, 1, gen), bandits, gru(1, 3, hidden=4), optim.adam(1e-3),
            config=meta.PPOConfig(epochs=1, num_minibatches=1, target_kl=-0.1)), ValueError, "config.target_kl"),
        ("gru-value-network-unknown", lambda: gru(1, 3, value_network="both"), ValueError, "value_network must be one of"),
        ("gru-init-kind", lambda: gru(1, 3, init=0), TypeError, "init must be one of"),
        ("gru-weight-norm-int", lambda: gru(1, 3, weight_norm=0), TypeError, "weight_norm must be a bool"),
        ("gru-update-gate-bias-inf", lambda: gru(1, 3, update_gate_bias=float("inf")), ValueError, "update_gate_bias"),
        ("gru-prev-obs-input-string", lambda: gru(1, 3, prev_obs_input="no"), TypeError, "prev_obs_input must be a bool"),
        ("gru-separate-hidden-shape", lambda: gru(1, 3, hidden=4, value_network="separate").apply(
            gru(1, 3, hidden=4, value_network="separate").init(0), torch.zeros(2, 6), torch.zeros(2, 4)), ValueError,
         r"hidden expected shape \(2, 8\)"),
        ("rl2-inputs-prev-obs-shape", lambda: nn.rl2_inputs(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64),
                                                            torch.zeros(2), torch.zeros(2), 3, torch.zeros(2, 4)),
         ValueError, "prev_obs expected shape"),
        ("memory-gauge-window-zero", lambda: envs.windowed_greedy(mdp, m_tasks, m_noise, 0), ValueError, "window"),
        ("memory-gauge-window-float", lambda: envs.windowed_greedy(bandits, b_tasks, b_noise, 2.0), TypeError,
         "window must be an int"),
        ("memory-gauge-env-kind", lambda: envs.windowed_greedy(NAV, b_tasks, b_noise, 2), TypeError, "env must be"),
        ("memory-gauge-noise-shape", lambda: envs.windowed_greedy(bandits, b_tasks, b_noise[:3], 2), ValueError,
         "env_noise leaves expected shape"),
        ("memory-gauge-tasks-kind", lambda: envs.windowed_greedy(bandits, m_tasks, b_noise, 2), TypeError, "tasks must be"),
        ("ucb-prior-unknown", lambda: envs.bandit_baseline(bandits, b_tasks, "ucb1", b_noise, ucb_prior="optimistic"),
         ValueError, "ucb_prior must be one of"),
        ("mdp-reward-prior-mean-string", lambda: envs.mdp_baseline(mdp, m_tasks, "psrl", m_noise, reward_prior_mean="0"),
         TypeError, "reward_prior_mean must be a number"),
    ]


RL2_ISSUE28_CASES = _rl2_issue28_cases()


@pytest.mark.parametrize("case", RL2_ISSUE28_CASES, ids=[c[0] for c in RL2_ISSUE28_CASES])
def test_rl2_agent_options_reject_bad_input(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()
