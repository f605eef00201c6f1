"""The runner base: exact resume, refused checkpoints, atomic metrics, signals, restore_like."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from functional_metarl import optim
from functional_metarl.optim import AdamState
from functional_metarl.runners.base import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    METRICS_FILE,
    RunConfig,
    Runner,
    restore_like,
    to_saveable,
)
from functional_metarl.runners.checkpoint import atomic_save


@dataclass
class ToyConfig(RunConfig):
    iterations: int = 4
    checkpoint_every: int = 2
    lr: float = 0.1
    batch: int = 8
    kill_at: int = 0  # send SIGTERM/SIGINT to this process at this iteration (0: never)
    kill_signal: int = int(signal.SIGTERM)
    nan_at: int = 0  # return a NaN loss at this iteration (0: never)

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE + ("kill_at", "nan_at")


class ToyRunner(Runner):
    """Linear regression with Adam on noise from a runner-owned generator; one iteration = one step."""

    config_class = ToyConfig
    log_prefix = "toy"
    progress_metric = "loss"

    def __init__(self, config: ToyConfig, output_dir: str | Path | None = None):
        super().__init__(config, output_dir)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.params = {"w": torch.zeros(3), "b": torch.zeros(())}
        self.opt = optim.adam(config.lr)
        self.opt_state = self.opt.init(self.params)

    def run_iteration(self) -> dict[str, float]:
        if self.config.kill_at and self.iteration + 1 == self.config.kill_at:
            os.kill(os.getpid(), self.config.kill_signal)
        x = torch.randn(self.config.batch, 3, generator=self.generator)
        y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

        def loss_fn(p):
            return ((x @ p["w"] + p["b"] - y) ** 2).mean()

        grads, loss = torch.func.grad_and_value(loss_fn)(self.params)
        if self.config.nan_at and self.iteration + 1 == self.config.nan_at:
            loss, grads = loss * float("nan"), {k: g * float("nan") for k, g in grads.items()}
        updates, self.opt_state = self.opt.update(grads, self.opt_state, self.params)
        self.params = optim.apply_updates(self.params, updates)
        return {"loss": float(loss)}

    def runner_state(self) -> dict[str, Any]:
        return {"params": self.params, "opt_state": self.opt_state, "generator": self.generator.get_state()}

    def load_runner_state(self, state: dict[str, Any]) -> None:
        self.params = restore_like(state["params"], self.params, "params")
        self.opt_state = restore_like(state["opt_state"], self.opt_state, "opt_state")
        self.generator.set_state(state["generator"])

    def evaluate(self) -> dict[str, float]:
        return {"w_norm": float(self.params["w"].norm())}


def test_resume_is_bit_identical(tmp_path):
    whole = ToyRunner(ToyConfig(iterations=4), tmp_path / "whole")
    whole.train(progress=False)
    first = ToyRunner(ToyConfig(iterations=2), tmp_path / "split")
    first.train(progress=False)
    first.close()
    resumed = ToyRunner(ToyConfig(iterations=4), tmp_path / "split")
    resumed.load_checkpoint(tmp_path / "split" / CHECKPOINT_FILE)
    assert resumed.iteration == 2
    resumed.train(progress=False)
    assert resumed.history == whole.history
    for k in whole.params:
        assert torch.equal(resumed.params[k], whole.params[k])
    assert isinstance(resumed.opt_state, AdamState)
    assert torch.equal(resumed.opt_state.count, whole.opt_state.count)
    assert torch.equal(resumed.generator.get_state(), whole.generator.get_state())
    # from_checkpoint rebuilds the config from the checkpoint
    rebuilt = ToyRunner.from_checkpoint(tmp_path / "whole" / CHECKPOINT_FILE)
    assert rebuilt.config == ToyConfig(iterations=4, device="cpu")
    assert rebuilt.history == whole.history
    assert torch.equal(rebuilt.params["w"], whole.params["w"])


def test_state_dict_loads_weights_only(tmp_path):
    runner = ToyRunner(ToyConfig(), tmp_path)
    runner.train(progress=False)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["runner"] == "ToyRunner" and state["iteration"] == 4
    assert type(state["state"]["opt_state"]) is tuple
    assert [row["iteration"] for row in state["history"]] == [1, 2, 3, 4]


def test_old_format_checkpoint_refused(tmp_path):
    runner = ToyRunner(ToyConfig(), tmp_path)
    state = runner.state_dict()
    del state["format"]
    atomic_save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="older version of functional_metarl.*cannot be resumed"):
        runner.load_checkpoint(tmp_path / "old.pt")
    with pytest.raises(ValueError, match="older version"):
        ToyRunner.from_checkpoint(tmp_path / "old.pt")


def test_other_runner_refused(tmp_path):
    class OtherRunner(ToyRunner):
        pass

    other = OtherRunner(ToyConfig(), tmp_path)
    other.save_checkpoint()
    with pytest.raises(ValueError, match="'OtherRunner', not by 'ToyRunner'"):
        ToyRunner(ToyConfig()).load_checkpoint(tmp_path / CHECKPOINT_FILE)


def test_mismatched_config_refused(tmp_path):
    ToyRunner(ToyConfig(lr=0.1), tmp_path).save_checkpoint()
    with pytest.raises(ValueError, match=r"different settings for \['lr'\]"):
        ToyRunner(ToyConfig(lr=0.2)).load_checkpoint(tmp_path / CHECKPOINT_FILE)
    # RESUMABLE settings may differ
    ToyRunner(ToyConfig(iterations=9, checkpoint_every=3, kill_at=5)).load_checkpoint(tmp_path / CHECKPOINT_FILE)


def test_metrics_json_is_atomic_and_keeps_eval(tmp_path):
    runner = ToyRunner(ToyConfig(iterations=2), tmp_path)
    runner.train(progress=False)
    runner.write_metrics(runner.evaluate())
    runner.config.iterations = 4
    runner.train(progress=False)  # checkpoints rewrite metrics.json without an evaluation
    payload = json.loads((tmp_path / METRICS_FILE).read_text())
    assert set(payload) == {"config", "history", "eval"}
    assert set(payload["eval"]) == {"w_norm"}
    assert len(payload["history"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
    assert (tmp_path / "tensorboard").is_dir()


def test_no_output_dir_writes_nothing(tmp_path):
    runner = ToyRunner(ToyConfig())
    assert runner.save_checkpoint() is None
    runner.train(progress=False)
    runner.close()
    runner.close()  # idempotent


_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_runner_base import ToyConfig, ToyRunner
    runner = ToyRunner(ToyConfig(iterations=6, checkpoint_every=100, kill_at=3, kill_signal={sig}), {out!r})
    try:
        runner.train(progress=False)
    except KeyboardInterrupt:
        print("interrupted at", runner.iteration)
        sys.exit(3)
    print("finished")
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_train_writes_checkpoint(tmp_path, sig):
    code = _CHILD.format(tests=str(Path(__file__).parent), sig=int(sig), out=str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM, proc.stderr
    else:  # the re-delivered SIGINT raises KeyboardInterrupt after the checkpoint
        assert proc.returncode == 3 and "interrupted at 3" in proc.stdout, proc.stderr
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert state["iteration"] == 3  # the iteration that received the signal finished
    assert len(json.loads((tmp_path / METRICS_FILE).read_text())["history"]) == 3


def test_max_seconds_stops_after_a_checkpoint(tmp_path):
    runner = ToyRunner(ToyConfig(iterations=50, checkpoint_every=100), tmp_path)
    runner.train(progress=False, max_seconds=1e-9)  # past the limit after the first iteration
    assert runner.iteration == 1
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["iteration"] == runner.iteration
    with pytest.raises(ValueError, match="max_seconds"):
        runner.train(progress=False, max_seconds=0.0)


def test_signal_handlers_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    ToyRunner(ToyConfig(iterations=1)).train(progress=False)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_restore_like_round_trip_and_errors():
    params = {"w": torch.randn(3), "b": torch.zeros(())}
    state = optim.adam(0.1).init(params)
    saved = to_saveable({"opt": state})
    assert type(saved["opt"]) is tuple
    back = restore_like(saved["opt"], state, "opt_state")
    assert isinstance(back, AdamState) and torch.equal(back.mu["w"], state.mu["w"])
    other = optim.adam(0.1).init({"w": torch.randn(4), "b": torch.zeros(())})
    with pytest.raises(ValueError, match=r"opt_state\[1\]\['w'\]: saved shape \(4,\)"):
        restore_like(to_saveable(other), state, "opt_state")
    with pytest.raises(ValueError, match="opt_state: the saved state has 3 leaves, the live one 5"):
        restore_like(to_saveable(optim.adam(0.1).init({"w": torch.randn(3)})), state, "opt_state")
    with pytest.raises(ValueError, match="params: the saved state has another structure"):
        restore_like({"w": torch.randn(3), "c": torch.zeros(())}, params, "params")
    with pytest.raises(ValueError, match=r"params\['b'\]: expected a saved tensor"):
        restore_like({"w": torch.randn(3), "b": 0.0}, params, "params")


def test_config_validation():
    with pytest.raises(TypeError, match="iterations must be an int"):
        ToyConfig(iterations=2.0)
    with pytest.raises(ValueError, match="iterations must be an int in"):
        ToyConfig(iterations=0)
    with pytest.raises(TypeError, match="checkpoint_every must be an int"):
        ToyConfig(checkpoint_every=True)
    with pytest.raises(TypeError, match="seed must be an int"):
        ToyConfig(seed="1")
    with pytest.raises(TypeError, match="config must be a ToyConfig"):
        ToyRunner(RunConfig(iterations=1))
    assert ToyConfig.from_dict(ToyConfig(lr=0.5).to_dict()) == ToyConfig(lr=0.5)
    with pytest.raises(ValueError, match=r"no settings \['nope'\]"):
        ToyConfig.from_dict({"nope": 1})


# ---------------------------------------------------------------------------- faults
# The fault cases README.md's Reliability section counts: a signal mid-run (above, and resumed
# bit for bit below), a non-finite metric, a run directory of other settings, a truncated
# checkpoint. None of them leaves a corrupt checkpoint.

_KILLED_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_runner_base import ToyConfig, ToyRunner
    ToyRunner(ToyConfig(iterations=8, checkpoint_every=2, kill_at=5), {out!r}).train(progress=False)
    print("finished")  # never reached: SIGTERM ends the process after the checkpoint
""")


def test_sigterm_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    """A separate process is killed with SIGTERM at iteration 5 of 8 (checkpoints every 2): it
    checkpoints after iteration 5 and exits by the signal; resuming ends at exactly the params,
    optimizer state, generator state and history of a run that was never interrupted."""
    out = tmp_path / "killed"
    code = _KILLED_CHILD.format(tests=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGTERM and "finished" not in proc.stdout, proc.stderr
    assert torch.load(out / CHECKPOINT_FILE, weights_only=True)["iteration"] == 5
    resumed = ToyRunner(ToyConfig(iterations=8, checkpoint_every=2), out)
    resumed.load_checkpoint(out / CHECKPOINT_FILE)
    resumed.train(progress=False)
    whole = ToyRunner(ToyConfig(iterations=8, checkpoint_every=2), tmp_path / "whole")
    whole.train(progress=False)
    assert resumed.iteration == whole.iteration == 8
    assert resumed.history == whole.history
    for k in whole.params:
        assert torch.equal(resumed.params[k], whole.params[k])
    for a, b in zip(resumed.opt_state, whole.opt_state):
        for k in whole.params:
            assert torch.equal(a[k] if isinstance(a, dict) else a, b[k] if isinstance(b, dict) else b)
    assert torch.equal(resumed.generator.get_state(), whole.generator.get_state())
    on_disk = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert on_disk["iteration"] == 8 and on_disk["history"] == whole.history


def test_non_finite_metric_stops_naming_the_iteration_and_keeps_the_last_checkpoint(tmp_path):
    runner = ToyRunner(ToyConfig(iterations=6, checkpoint_every=2, nan_at=4), tmp_path)
    with pytest.raises(FloatingPointError, match=r"ToyRunner stopped at iteration 4: non-finite metrics \{'loss': nan\}"
                                                  r".*last good checkpoint .* is left as it was"):
        runner.train(progress=False)
    assert runner.iteration == 3 and len(runner.history) == 3
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert state["iteration"] == 2  # the checkpoint of iteration 2, untouched
    assert len(json.loads((tmp_path / METRICS_FILE).read_text())["history"]) == 2
    assert torch.isfinite(state["state"]["params"]["w"]).all()
    # the runner's state is NaN now: it refuses to write it over the good checkpoint
    with pytest.raises(FloatingPointError, match=r"refusing to write a checkpoint at iteration 3: "
                                                  r"state\['opt_state'\]\[1\]\['b'\] holds non-finite values"):
        runner.save_checkpoint()
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["iteration"] == 2
    # and the good checkpoint resumes (nan_at is RESUMABLE)
    fresh = ToyRunner(ToyConfig(iterations=6, checkpoint_every=2), tmp_path)
    fresh.load_checkpoint(tmp_path / CHECKPOINT_FILE)
    fresh.train(progress=False)
    assert fresh.iteration == 6


def test_floating_point_error_inside_an_iteration_names_it(tmp_path):
    class Failing(ToyRunner):
        def run_iteration(self):
            if self.iteration == 1:
                raise FloatingPointError("meta-loss is not finite")
            return super().run_iteration()

    runner = Failing(ToyConfig(iterations=4, checkpoint_every=1), tmp_path)
    with pytest.raises(FloatingPointError, match="Failing stopped at iteration 2: meta-loss is not finite"):
        runner.train(progress=False)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["iteration"] == 1


def test_run_directory_of_other_settings_is_not_overwritten(tmp_path):
    ToyRunner(ToyConfig(iterations=2, lr=0.1), tmp_path).train(progress=False)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    other = ToyRunner(ToyConfig(iterations=2, lr=0.2), tmp_path)
    with pytest.raises(FileExistsError, match=rf"output_dir {tmp_path} holds a run with different settings for "
                                              r"\['lr'\] \(lr: there 0.1, now 0.2\); pass overwrite=True"):
        other.train(progress=False)
    with pytest.raises(FileExistsError, match="different settings"):
        other.save_checkpoint()
    with pytest.raises(FileExistsError, match="different settings"):
        other.write_metrics({"x": 1.0})
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert json.loads((tmp_path / METRICS_FILE).read_text())["config"]["lr"] == 0.1
    # same settings (RESUMABLE ones aside) may write: e.g. a longer run of the same config
    ToyRunner(ToyConfig(iterations=3, lr=0.1), tmp_path).save_checkpoint()
    # a run of another runner class is refused too
    class OtherRunner(ToyRunner):
        pass

    with pytest.raises(FileExistsError, match="holds a run of 'ToyRunner', not of 'OtherRunner'"):
        OtherRunner(ToyConfig(iterations=2, lr=0.1), tmp_path).save_checkpoint()
    # asked for: overwritten
    other.train(progress=False, overwrite=True)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["config"]["lr"] == 0.2
    with pytest.raises(TypeError, match="overwrite must be a bool"):
        other.train(progress=False, overwrite="yes")


def test_truncated_checkpoint_is_refused_and_not_overwritten_by_another_run(tmp_path):
    ToyRunner(ToyConfig(iterations=2, lr=0.1), tmp_path).train(progress=False)
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a crash mid-copy, outside atomic_save
    with pytest.raises(ValueError, match="cannot be read .*truncated"):
        ToyRunner(ToyConfig(iterations=4, lr=0.1), tmp_path).load_checkpoint(path)
    # metrics.json still says which run it was: another config is refused, the same one may rewrite it
    with pytest.raises(FileExistsError, match=r"different settings for \['lr'\]"):
        ToyRunner(ToyConfig(iterations=2, lr=0.3), tmp_path).train(progress=False)
    (tmp_path / METRICS_FILE).unlink()
    with pytest.raises(FileExistsError, match="settings cannot be read"):
        ToyRunner(ToyConfig(iterations=2, lr=0.3), tmp_path).train(progress=False)
    ToyRunner(ToyConfig(iterations=2, lr=0.3), tmp_path).train(progress=False, overwrite=True)
    assert torch.load(path, weights_only=True)["iteration"] == 2
