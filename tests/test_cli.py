"""The command line and the config loader: configs checked on load, every shipped config valid,
train -> evaluate on a shipped config, resume / overwrite, and the console script itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from functional_metarl import cli
from functional_metarl.cli import FAMILIES, RUN_FILE, RUNNERS, Family, RunSpec, build_runner, load_run_spec, main, main_exit, shipped_configs
from functional_metarl.meta import TRPOConfig
from functional_metarl.runners import (
    CHECKPOINT_FILE,
    MAMLConfig,
    MAMLTrainer,
    OptionCriticConfig,
    OptionCriticTrainer,
    RainbowConfig,
    RL2Config,
)
from functional_metarl.runners.configs import config_from_dict, load_yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--iterations", "2", "--meta-batch-size", "2", "--episodes-per-task", "2", "--no-progress"]


# ---------------------------------------------------------------------------- config_from_dict
def test_config_from_dict_builds_nested_configs_and_converts():
    config = config_from_dict(MAMLConfig, {"iterations": 5, "trpo": {"max_kl": 0.02}, "hidden": [32, 32],
                                           "meta_lr": 1, "mean_bound": None})
    assert config == MAMLConfig(iterations=5, trpo=TRPOConfig(max_kl=0.02), hidden=(32, 32), meta_lr=1.0)
    assert isinstance(config.trpo, TRPOConfig) and isinstance(config.meta_lr, float)
    assert config_from_dict(MAMLConfig, config.to_dict()) == config  # the round trip of metrics.json
    assert config_from_dict(RainbowConfig, {"env_kwargs": {"a": 1}, "max_grad_norm": None}).max_grad_norm is None
    assert config_from_dict(RL2Config, {"entropy_coef_final": 0, "entropy_decay_iterations": 10}).entropy_coef_final == 0.0


@pytest.mark.parametrize("values, error, message", [
    # unknown keys: named with their path, the allowed keys listed
    ({"iterationz": 3}, ValueError, r"unknown config key 'iterationz' \(in MAMLConfig\); allowed keys: \['action_scale'"),
    ({"trpo": {"max_kll": 1}}, ValueError, r"unknown config key 'trpo.max_kll' \(in trpo\); allowed keys: \['cg_damping'"),
    # wrong types: key, value and the expected type
    ({"iterations": "5"}, TypeError, r"config key 'iterations' must be an int, got '5' \(str\)"),
    ({"iterations": 2.0}, TypeError, r"config key 'iterations' must be an int, got 2.0 \(float\)"),
    ({"iterations": True}, TypeError, r"config key 'iterations' must be an int, got True \(bool\)"),
    ({"inner_lr": "0.1"}, TypeError, r"config key 'inner_lr' must be a number, got '0.1' \(str\)"),
    ({"first_order": "yes"}, TypeError, r"config key 'first_order' must be a bool, got 'yes'"),
    ({"hidden": 64}, TypeError, r"config key 'hidden' must be a list of ints, got 64 \(int\)"),
    ({"hidden": [32, "a"]}, TypeError, r"config key 'hidden\[1\]' must be an int, got 'a' \(str\)"),
    ({"mean_bound": "x"}, TypeError, r"config key 'mean_bound' must be a number or null, got 'x'"),
    ({"trpo": 3}, TypeError, r"config key 'trpo' must be a mapping of TRPOConfig settings, got 3"),
    ({"trpo": {"cg_iters": 1.5}}, TypeError, r"config key 'trpo.cg_iters' must be an int, got 1.5"),
    # out of range: the key path, the value, then the config's own message with what is allowed
    ({"inner_lr": -0.1}, ValueError, r"config key 'inner_lr' = -0.1: inner_lr must be a finite number in \(0, inf\)"),
    ({"gamma": 1.5}, ValueError, r"config key 'gamma' = 1.5: gamma must be a finite number in \[0, 1\]"),
    ({"iterations": 0}, ValueError, r"config key 'iterations' = 0: iterations must be an int in \[1, inf\)"),
    ({"trpo": {"max_kl": -1}}, ValueError, r"config key 'trpo.max_kl' = -1.0: max_kl must be a finite number in \(0, inf\)"),
    ({"hidden": [32, 0]}, ValueError, r"config key 'hidden' = \(32, 0\): hidden\[1\] must be an int in \[1, inf\)"),
    ({"estimator": "foo"}, ValueError, r"config key 'estimator' = 'foo': estimator must be one of \('maml'"),
    ({"proportional_inner_step": 0.4, "horizon": 5}, ValueError,
     r"config key 'proportional_inner_step' = 0.4: proportional_inner_step needs horizon >= 10"),
])
def test_config_from_dict_rejects_naming_the_key(values, error, message):
    with pytest.raises(error, match=message):
        config_from_dict(MAMLConfig, values)


def test_config_from_dict_bad_arguments():
    with pytest.raises(TypeError, match="config_class must be a dataclass type"):
        config_from_dict(dict, {})
    with pytest.raises(TypeError, match="the config must be a mapping of MAMLConfig settings, got \\[1\\]"):
        config_from_dict(MAMLConfig, [1])
    with pytest.raises(ValueError, match=r"config key 'switch_goal_at' \(default 1000\): switch_goal_at must be an int in \[1, 4\], got 1000"):
        config_from_dict(OptionCriticConfig, {"iterations": 5})


def test_load_yaml_reads_exponent_floats_and_refuses_bad_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nbig: 5E+4\nname: x\n")
    assert load_yaml(path) == {"lr": 1e-3, "big": 5e4, "name": "x"}
    with pytest.raises(FileNotFoundError, match="no config file at"):
        load_yaml(tmp_path / "missing.yaml")
    path.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping of settings, got list"):
        load_yaml(path)


# ---------------------------------------------------------------------------- config documents
@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_every_shipped_config_is_valid(name):
    spec = load_run_spec(shipped_configs()[name])
    assert isinstance(spec, RunSpec) and spec.runner in RUNNERS and spec.runner in FAMILIES[spec.family].runners
    assert load_run_spec(spec.to_dict()) == spec  # what run.yaml holds reads back the same


def test_shipped_configs_cover_the_readme_table():
    names = set(shipped_configs())
    for expected in ("maml_nav", "maml_nav_paper", "maml_nav_released", "maml_nav_lvc_promp", "maml_nav_dice",
                     "maml_nav_proportional", "maml_half_cheetah_vel", "maml_half_cheetah_dir", "maml_ant_dir",
                     "maml_metaworld_ml1_reach", "maml_metaworld_ml10", "maml_bandit", "maml_mdp",
                     "rl2_bandit_k5_n10", "rl2_bandit_k10_n100", "rl2_mdp_n10", "rl2_mdp_n25", "rainbow_cartpole",
                     "rainbow_atari_pong", "ddpg_pendulum", "td3_pendulum", "td3_half_cheetah",
                     "option_critic_four_rooms", "option_critic_cartpole", "option_critic_pick_place", "maml_atari_freeway"):
        assert expected in names
    paper = load_run_spec(shipped_configs()["maml_nav_paper"]).config
    assert (paper.meta_batch_size, paper.episodes_per_task, paper.horizon, paper.inner_lr, paper.inner_steps,
            paper.trpo.max_kl, paper.hidden, paper.activation) == (20, 20, 100, 0.1, 1, 0.01, (100, 100), "relu")


@pytest.mark.parametrize("document, error, message", [
    ({"family": "navigation"}, ValueError, r"config key 'runner' = None: expected one of \['ddpg'"),
    ({"runner": "ppo"}, ValueError, r"config key 'runner' = 'ppo': expected one of"),
    ({"runner": "maml", "family": "moon"}, ValueError, r"config key 'family' = 'moon': expected one of"),
    ({"runner": "maml", "family": "cartpole"}, ValueError,
     r"config key 'family' = 'cartpole': runner 'maml' takes the families \['ant_dir', 'bandit'"),
    ({"runner": "rl2", "family": "bandit", "env": "mdp"}, ValueError,
     r"config key 'env' = 'mdp': family 'bandit' needs 'bandit'"),
    ({"runner": "maml", "family_options": [1]}, TypeError, r"config key 'family_options' must be a mapping"),
    ({"runner": "maml", "trpo": {"max_kl": 0}}, ValueError, r"config key 'trpo.max_kl' = 0.0"),
    ("not a mapping", FileNotFoundError, "no config file at"),
])
def test_load_run_spec_rejects(document, error, message):
    with pytest.raises(error, match=message):
        load_run_spec(document)


def test_family_defaults_and_options():
    spec = load_run_spec({"runner": "rl2", "family": "mdp"})
    assert spec.config.env == "mdp"
    assert load_run_spec({"runner": "rl2"}).family == "bandit"
    assert isinstance(FAMILIES["navigation"], Family)
    runner = build_runner(load_run_spec({"runner": "maml", "iterations": 1, "meta_batch_size": 2,
                                         "episodes_per_task": 2, "device": "cpu"}))
    assert isinstance(runner, MAMLTrainer) and runner.output_dir is None
    bandit = build_runner(load_run_spec({"runner": "maml", "family": "bandit", "horizon": 1, "device": "cpu",
                                         "family_options": {"num_arms": 3, "num_pulls": 4}}))
    assert bandit.sampler.env.num_arms == 3
    with pytest.raises(ValueError, match="family_options: BernoulliBandits does not take these settings"):
        build_runner(load_run_spec({"runner": "maml", "family": "bandit", "family_options": {"arms": 3}}))
    with pytest.raises(ValueError, match=r"family_options: this family takes none, got \['x'\]"):
        build_runner(load_run_spec({"runner": "option_critic", "family_options": {"x": 1}}))


# ---------------------------------------------------------------------------- the commands
def _run(argv, capsys):
    """``main(argv)`` -> (exit status, stdout, stderr); usage errors exit with status 2."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_then_evaluate_a_shipped_config(tmp_path, capsys):
    out = tmp_path / "nav"
    code, stdout, _ = _run(["train", "maml_nav_paper", "--output", str(out), *TINY, "--trpo.max-kl", "0.02",
                            "--hidden", "16", "16"], capsys)
    assert code == 0, stdout
    run = load_yaml(out / RUN_FILE)
    assert run["runner"] == "maml" and run["family"] == "navigation" and run["trpo"]["max_kl"] == 0.02
    assert run["hidden"] == [16, 16] and run["activation"] == "relu"
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert state["runner"] == "MAMLTrainer" and state["iteration"] == 2
    code, stdout, _ = _run(["evaluate", str(out), "--eval-tasks", "2", "--eval-episodes", "2", "--max-steps", "2"],
                           capsys)
    assert code == 0
    assert "inner steps | best params |   latest | MAML paper" in stdout
    assert "           2 |" in stdout and "-11.7" in stdout
    assert set(json.loads((out / "metrics.json").read_text())["eval"]) == {"best", "final"}
    assert (out / "returns.png").is_file() and (out / "trajectories.png").is_file()
    # resume continues the run as it was started (run.yaml), with a longer budget
    code, stdout, _ = _run(["train", "maml_nav_paper", "--output", str(out), "--iterations", "3", "--resume",
                            "--no-progress"], capsys)
    assert code == 0 and "resumed from" in stdout
    assert torch.load(out / CHECKPOINT_FILE, weights_only=True)["iteration"] == 3


def test_train_refuses_to_overwrite_unless_asked(tmp_path, capsys):
    out = tmp_path / "nav"
    assert _run(["train", "maml_nav", "--output", str(out), *TINY], capsys)[0] == 0
    before = (out / CHECKPOINT_FILE).read_bytes()
    code, _, err = _run(["train", "maml_nav", "--output", str(out), *TINY], capsys)
    assert code == 2 and "already holds a run (checkpoint.pt); pass --resume to continue it or --overwrite" in err
    code, _, err = _run(["train", "maml_nav", "--output", str(out), *TINY, "--inner-lr", "0.3", "--resume"], capsys)
    assert code == 2 and "different settings for ['inner_lr']" in err
    assert (out / CHECKPOINT_FILE).read_bytes() == before
    code, _, _ = _run(["train", "maml_nav", "--output", str(out), *TINY, "--inner-lr", "0.3", "--overwrite"], capsys)
    assert code == 0 and load_yaml(out / RUN_FILE)["inner_lr"] == 0.3
    code, _, err = _run(["train", "rl2_bandit_k5_n10", "--output", str(out), "--resume"], capsys)
    assert code == 2 and "holds a maml run on navigation" in err


@pytest.mark.parametrize("text, message", [
    ("runner: maml\ntrpo: {max_kll: 1}\n", "unknown config key 'trpo.max_kll'"),
    ("runner: maml\niterations: ten\n", "config key 'iterations' must be an int, got 'ten'"),
    ("runner: maml\ninner_lr: -1\n", "config key 'inner_lr' = -1.0: inner_lr must be a finite number in (0, inf)"),
])
def test_train_rejects_bad_config_files(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, err = _run(["train", str(path), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # tyro boxes its errors to the terminal's width
    code, _, err = _run(["train", "no_such_config"], capsys)
    assert code == 2 and "no config file 'no_such_config'" in err and "maml_nav_paper" in err
    code, _, err = _run(["train", "maml_nav", "--output", str(tmp_path / "x"), "--resume"], capsys)
    assert code == 2 and "--resume: no checkpoint at" in err
    code, _, err = _run(["train", "maml_nav", "--output", str(tmp_path / "x"), "--trpo.max-kl", "-1"], capsys)
    assert code == 2 and "max_kl must be a finite number in (0, inf)" in err
    code, _, err = _run(["evaluate", str(tmp_path)], capsys)
    assert code == 2 and "no checkpoint at" in err
    code, _, err = _run(["evaluate", str(tmp_path), "--eval-tasks", "0"], capsys)
    assert code == 2 and "--eval-tasks must be a positive int, got 0" in err
    code, _, err = _run(["benchmark", "no_such_benchmark"], capsys)
    assert code == 2 and "no benchmark 'no_such_benchmark'; available: [" in err


def test_list(capsys):
    code, stdout, _ = _run(["list"], capsys)
    assert code == 0
    for name in (*RUNNERS, *FAMILIES, *shipped_configs()):
        assert name in stdout


def test_evaluate_a_non_maml_runner_without_run_yaml(tmp_path, capsys):
    """A run directory an example wrote (no run.yaml): the runner class comes from the checkpoint."""
    config = OptionCriticConfig(iterations=2, num_runs=2, max_steps=50, switch_goal_at=None, device="cpu")
    with OptionCriticTrainer(config, tmp_path) as trainer:
        trainer.train(progress=False)
    code, stdout, _ = _run(["evaluate", str(tmp_path)], capsys)
    assert code == 0 and "OptionCriticTrainer at iteration 2: evaluation" in stdout
    assert "steps_to_goal_last100" in json.loads((tmp_path / "metrics.json").read_text())["eval"]


def test_console_script_and_python_dash_m(tmp_path):
    """The installed ``functional-metarl`` script (pyproject's [project.scripts]) and ``python -m``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")  # tyro boxes its errors to the terminal's width
    script = Path(sys.executable).parent / "functional-metarl"
    commands = [[sys.executable, "-m", "functional_metarl", "list"]]
    if script.is_file():
        commands.append([str(script), "list"])
    for command in commands:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0 and "shipped configs" in proc.stdout and "maml_nav_paper" in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "functional_metarl", "benchmark", "code_metrics", "--", "--help"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the test: train a shipped config for a few iterations, then evaluate its run directory
    run = commands[-1][:-1]
    proc = subprocess.run([*run, "train", "maml_nav_paper", *TINY], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "maml_nav_paper" / CHECKPOINT_FILE).is_file()  # default output: runs/<config>
    proc = subprocess.run([*run, "evaluate", "runs/maml_nav_paper", "--eval-tasks", "2", "--eval-episodes", "2"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "inner steps | best params" in proc.stdout, proc.stderr
    proc = subprocess.run([*run, "train", "maml_nav_paper", "--iterations", "0"], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "iterations must be an int in [1, inf), got 0" in proc.stderr
    assert callable(main_exit) and cli.main is main


def test_train_help_lists_the_config_fields_with_the_files_values(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, stdout, _ = _run(["train", "maml_nav_paper", "--help"], capsys)
    assert code == 0
    assert "--overwrite" in stdout and "--resume" in stdout  # the command's own flags
    assert "--trpo.max-kl" in stdout and "--meta-batch-size" in stdout  # the config's, from tyro
    assert "relu" in stdout  # defaults are the file's values (MAMLConfig's own is tanh)
