"""Smoke test of benchmarks/agents_throughput.py: its --quick path runs and writes its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_agents_throughput_quick(tmp_path):
    out = tmp_path / "agents_throughput.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # Three cheap agents (one per runner family), 3 timed steps each: a few seconds.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "agents_throughput.py"), "--quick", "--steps", "3", "--repeats", "1",
         "--agents", "rainbow_cartpole", "ddpg_pendulum", "option_critic_fourrooms", "--device", "cpu",
         "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    rows = {r["agent"]: r for r in payload["rows"]}
    assert set(rows) == {"rainbow_cartpole", "ddpg_pendulum", "option_critic_fourrooms"}
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["status"])
        assert row["env_steps_per_s"] > 0 and row["updates_per_s"] > 0, name
        assert row["threads"] == 1
    assert rows["option_critic_fourrooms"]["env_steps_per_block"] == 30  # 3 steps x 10 learners
    assert "rainbow_cartpole" in proc.stdout and "env steps/s" in proc.stdout


def test_maml_nav_vs_commit_runs_against_head():
    """benchmarks/maml_nav_vs_commit.py exports a commit's package under another name and
    interleaves both trainers; against HEAD both sides run the same algorithm."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        import pytest

        pytest.skip("not a git checkout")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "maml_nav_vs_commit.py"), "HEAD", "--iterations", "2",
         "--warmup", "0", "--threads", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "this checkout / HEAD:" in proc.stdout
    assert proc.stdout.count("s / meta-iteration") == 2


def test_maml_nav_adapted_paths_and_eval_lrs_run_on_a_checkpoint(tmp_path):
    """The two checkpoint diagnostics run on a tiny run's checkpoint, with learned step sizes."""
    from functional_metarl.runners import CHECKPOINT_FILE, MAMLConfig, MAMLTrainer

    config = MAMLConfig(iterations=1, meta_batch_size=2, episodes_per_task=2, horizon=10, hidden=(4,),
                        device="cpu", learn_inner_lr=True)
    MAMLTrainer(config, tmp_path).train(progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    checkpoint = str(tmp_path / CHECKPOINT_FILE)
    for script, extra, needle in (
        ("maml_nav_adapted_paths.py", ["--tasks", "3", "--params", "best", "--step-scales", "0.5", "2"],
         "best scale per band"),
        ("maml_nav_eval_lrs.py", ["--tasks", "2", "--ratios", "0.1", "--seeds", "1"], "proportional_inner_step None"),
        ("maml_nav_eval_lrs.py", ["--tasks", "2", "--ratios", "0.1", "--seeds", "1", "--proportional-inner-step", "0.4"],
         "proportional_inner_step 0.4"),
    ):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), checkpoint, *extra],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, script + proc.stdout[-3000:] + proc.stderr[-3000:]
        assert needle in proc.stdout, script + proc.stdout[-3000:]
    for script, flag, needle in (("maml_nav_adapted_paths.py", ["--step-scales", "0"], "--step-scales"),
                                 ("maml_nav_eval_lrs.py", ["--proportional-inner-step", "-1"], "proportional_inner_step")):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), checkpoint, *flag],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]  # a usage error naming it
    assert "learned step sizes of log_std" in subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "maml_nav_adapted_paths.py"), checkpoint, "--tasks", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=True).stdout


def test_maml_nav_runs_table_averages_the_runs(tmp_path):
    """benchmarks/maml_nav_runs_table.py prints each run's eval rows and their mean, names the
    config fields that differ, and refuses a directory without a finished run."""
    for seed, offset in ((0, 0.0), (1, 2.0)):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        evaluation = {str(k): -40.0 + 10 * k + offset for k in range(4)}
        final = {str(k): value - 1.0 for k, value in evaluation.items()}
        if seed == 0:  # examples/maml_nav.py's format
            metrics = {"config": {"seed": seed, "inner_lr": 0.1}, "history": [], "eval": {"best": evaluation, "final": final}}
        else:  # the format of runs written before the runner base
            metrics = {"config": {"seed": seed, "inner_lr": 0.1}, "eval": evaluation, "eval_final": final}
        (run / "metrics.json").write_text(json.dumps(metrics))
    script = str(ROOT / "benchmarks" / "maml_nav_runs_table.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path / "seed0"), str(tmp_path / "seed1")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "differ between the runs: seed" in proc.stdout
    mean_rows = [line for line in proc.stdout.splitlines() if line.startswith("mean")]
    assert [[float(cell) for cell in row.split("|")[2:]] for row in mean_rows] == [
        [-39.0, -29.0, -19.0, -9.0], [-40.0, -30.0, -20.0, -10.0]]  # best, then latest
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "metrics.json").write_text(json.dumps({"config": {}, "history": [], "eval": None}))
    proc = subprocess.run([sys.executable, script, str(tmp_path / "unfinished")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode != 0 and "no complete 'eval' entry" in proc.stderr


def test_trpo_cg_convergence_tiny(tmp_path):
    """benchmarks/trpo_cg_convergence.py records at iterations 1 and 2; a solve with as many CG
    iterations as the reference is the reference (cosine 1, the same decrease)."""
    out = tmp_path / "cg.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "trpo_cg_convergence.py"), "--iterations", "2", "--every", "1",
         "--meta-batch-size", "4", "--cg-iters", "2", "5", "--reference-iters", "5", "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(out.read_text())["records"]
    assert [r["iteration"] for r in records] == [1, 2]
    for rec in records:
        short, same = rec["rows"]
        assert (short["cg_iters"], same["cg_iters"]) == (2, 5)
        assert abs(same["cosine"] - 1.0) < 1e-5 and abs(same["decrease_ratio"] - 1.0) < 1e-5
        assert short["cosine"] < 1.0 - 1e-4
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trpo_cg_convergence.py"), "--every", "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--every must be >= 1" in bad.stderr


def test_distributed_scaling_and_code_metrics_run():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "distributed_scaling.py"), "--iterations", "1",
                           "--warmup", "0", "--meta-batch-size", "4", "--processes", "1", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if "|" in line][1:]
    assert [r.split("|")[0].strip() for r in rows] == ["1", "1 (2 threads)", "2"]
    assert float(rows[-1].split("|")[4]) > 0  # two processes all-reduce something every iteration
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "distributed_scaling.py"), "--processes", "3"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--processes" in bad.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "code_metrics.py")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "raise statements:" in proc.stdout and "lines of meta/:" in proc.stdout


def test_agents_vs_cleanrl_ours_only(tmp_path):
    """benchmarks/agents_vs_cleanrl.py without the CleanRL env: our side of two rows at tiny
    budgets gives rates and says why CleanRL is missing; a bad flag is refused by name."""
    script = str(ROOT / "benchmarks" / "agents_vs_cleanrl.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = tmp_path / "vs.json"
    proc = subprocess.run(
        [sys.executable, script, "--rows", "dqn_cartpole", "ddpg_pendulum", "--repeats", "1", "--steps", "200",
         "--learning-starts", "100", "--compile", "off", "--cleanrl-python", str(tmp_path / "missing" / "python"),
         "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "CleanRL side skipped: no CleanRL env" in proc.stdout
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"dqn_cartpole", "ddpg_pendulum"}
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["status"])
        assert row["eager"][0]["env_steps_per_s"] > 0 and row["eager"][0]["timed_env_steps"] == 100, name
        assert row["cleanrl"] == [] and row["compiled"] == []
    assert rows["dqn_cartpole"]["eager"][0]["updates_per_s"] < rows["dqn_cartpole"]["eager"][0]["env_steps_per_s"]
    bad_flags = ((["--rows", "nope"], "--rows"), (["--steps", "150"], "--steps"), (["--repeats", "0"], "--repeats"))
    for bad, flag in bad_flags:
        proc = subprocess.run([sys.executable, script, "--ours-only", *bad], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2 and flag in proc.stderr, (bad, proc.stderr[-500:])
