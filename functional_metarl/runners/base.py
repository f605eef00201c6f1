"""The one runner base: every trainer supplies its iteration, its state and its evaluation.

A runner is the stateful shell around pure functions. What every runner shares lives here, once:

* the **config**: a :class:`RunConfig` dataclass whose ``iterations`` is the budget on every
  runner (the number of :meth:`Runner.run_iteration` calls; each runner says what one iteration
  is: a meta-iteration, an env step, an episode, a PPO iteration), plus ``seed``, ``device`` and
  ``checkpoint_every``;
* the **output directory**: ``checkpoint.pt`` (atomic), ``metrics.json`` (atomic;
  ``{"config", "history", "eval"}``) and TensorBoard scalars under ``tensorboard/``;
* the **budgeted loop** :meth:`Runner.train` with a progress bar, periodic checkpoints, an
  optional wall-time limit (``max_seconds``, an addition to the planned API that RL²'s examples
  use) and signal handling (SIGINT / SIGTERM finish the current iteration, write the checkpoint, then
  re-deliver the signal, so Ctrl-C still raises ``KeyboardInterrupt``);
* **faults**: a non-finite metric (or a ``FloatingPointError`` raised inside an iteration) stops
  the run with an error naming the iteration, before anything is written, so the last good
  checkpoint stays as it was; :meth:`Runner.save_checkpoint` refuses a state holding a non-finite
  float tensor; a run directory that holds a run with other settings is not written over unless
  ``overwrite`` is set (``FileExistsError`` naming the settings that differ);
* **resume**: :meth:`Runner.state_dict` / :meth:`Runner.load_state_dict`,
  :meth:`Runner.load_checkpoint` and :meth:`Runner.from_checkpoint`, refusing a checkpoint of
  another format, another runner, or other settings (outside ``RunConfig.RESUMABLE``).

A subclass gives ``config_class``, ``log_prefix``, ``run_iteration()``, ``runner_state()``,
``load_runner_state(state)`` and ``evaluate(...)``, optionally ``progress_metric`` and
``close()``. Its state is any tree of tensors and Python scalars (NamedTuples allowed):
:func:`to_saveable` makes it loadable with ``torch.load(weights_only=True)`` and
:func:`restore_like` rebuilds a saved tree into the structure of a live one (an optimizer state
is restored this way, never field by field).

Where this differs from the planned API, and why:

* an iteration that returns no metrics (an env step inside an episode, for the runners whose
  iteration is an env step) adds no row to ``history`` and logs nothing, so ``metrics.json``
  holds one row per event that has numbers rather than a million ``{"iteration": n}`` rows;
* ``train`` also takes ``max_seconds`` (RL²'s examples stop on wall time, with a checkpoint);
* ``from_checkpoint`` passes extra keyword arguments to the constructor (a runner that takes an
  ``env`` or ``env_fn`` cannot be rebuilt without them);
* ``RunConfig.from_dict`` (the inverse of ``to_dict``) and the ``METRICS_FILE`` /
  ``CHECKPOINT_FORMAT`` constants are public, for ``from_checkpoint`` and for tools that read runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, TypeVar

import numpy as np
import optree
import torch
from tqdm.auto import tqdm

from .. import checks
from ..meta import TaskShard
from .checkpoint import atomic_save, atomic_write_json, load_checkpoint_file, resolve_device
from .distributed import DataParallel
from .scalars import ScalarLogger

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "METRICS_FILE",
    "RunConfig",
    "Runner",
    "to_saveable",
    "restore_like",
]

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
# Bumped whenever the layout of what ``Runner.state_dict`` writes changes; checkpoints written
# before the runner base have no "format" entry at all.
CHECKPOINT_FORMAT = 2

R = TypeVar("R", bound="Runner")


# ============================================================================ config
@dataclass
class RunConfig:
    """Settings every runner has. Subclasses add their own fields after these (all with
    defaults) and redeclare ``iterations`` (and ``checkpoint_every``) with their own default.

    Args:
        iterations: the budget: how many ``run_iteration()`` calls ``train()`` makes in all.
        seed: seeds every generator of the run.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        checkpoint_every: write ``checkpoint.pt`` every this many iterations (and at the end).
    """

    iterations: int
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 100

    # Settings that may differ between a checkpoint and the run that resumes it.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("iterations", "device", "checkpoint_every")

    def __post_init__(self) -> None:
        checks.positive_int(self.iterations, "iterations")
        checks.int_in_range(self.seed, "seed")
        checks.instance(self.device, "device", str)
        checks.positive_int(self.checkpoint_every, "checkpoint_every")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """The config that :meth:`to_dict` wrote (lists back to tuples); unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no settings {unknown}")
        return cls(**{k: _tuples(v) for k, v in values.items()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# ============================================================================ state trees
def to_saveable(tree: Any) -> Any:
    """``tree`` in a form ``torch.load(weights_only=True)`` reads back.

    Tensors are detached and copied to the CPU, NamedTuples (optimizer and env states) become
    plain tuples, numpy arrays become tensors; dicts, lists, tuples, Python scalars, strings
    and ``None`` are kept. Use :func:`restore_like` to rebuild the NamedTuples on load.
    """
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.array(tree, copy=True))
    if isinstance(tree, dict):
        return {k: to_saveable(v) for k, v in tree.items()}
    if isinstance(tree, tuple):  # NamedTuples included: saved as plain tuples
        return tuple(to_saveable(v) for v in tree)
    if isinstance(tree, list):
        return [to_saveable(v) for v in tree]
    return tree


def restore_like(saved: Any, like: Any, name: str) -> Any:
    """Rebuild ``saved`` (what :func:`to_saveable` wrote) into the structure of the live tree ``like``.

    NamedTuples come back as ``like``'s types (e.g. an ``AdamState``), tensors move to the
    device of ``like``'s matching leaf, numpy leaves of ``like`` come back as numpy arrays.

    Args:
        saved: the saved tree (plain tuples where ``like`` has NamedTuples).
        like: the live tree with the wanted structure, leaf shapes and devices.
        name: what the tree is (e.g. ``"actor_opt_state"``), for error messages.

    Returns:
        A tree with ``like``'s structure holding ``saved``'s values.

    Raises:
        ValueError: different structure (leaf count or keys), a tensor where the live tree has
            none, or a different shape or dtype, naming ``name`` and the leaf's path.
    """
    like_paths, like_leaves, spec = optree.tree_flatten_with_path(like, none_is_leaf=True)
    saved_paths, saved_leaves, _ = optree.tree_flatten_with_path(saved, none_is_leaf=True)
    if len(saved_leaves) != len(like_leaves):
        raise ValueError(f"{name}: the saved state has {len(saved_leaves)} leaves, the live one {len(like_leaves)}; "
                         "was it written with other settings?")
    if saved_paths != like_paths:
        diff = next(p for p, q in zip(saved_paths, like_paths) if p != q)
        raise ValueError(f"{name}: the saved state has another structure (saved leaf {diff!r} not in the live state)")
    out = []
    for path, s, l in zip(like_paths, saved_leaves, like_leaves):
        where = name + "".join(f"[{p!r}]" for p in path)
        if isinstance(l, (torch.Tensor, np.ndarray)):
            if not isinstance(s, torch.Tensor):
                raise ValueError(f"{where}: expected a saved tensor, got {type(s).__name__}")
            if tuple(s.shape) != tuple(l.shape):
                raise ValueError(f"{where}: saved shape {tuple(s.shape)} differs from the live shape {tuple(l.shape)}")
            if isinstance(l, np.ndarray):
                s = s.numpy().astype(l.dtype, copy=False)
            else:
                if s.dtype != l.dtype:
                    raise ValueError(f"{where}: saved dtype {s.dtype} differs from the live dtype {l.dtype}")
                s = s.to(l.device)
        out.append(s)
    return optree.tree_unflatten(spec, out)


def _non_finite_leaf(tree: Any) -> str | None:
    """The path (``['params']['w']``) of the first floating tensor of ``tree`` with a non-finite
    entry, or ``None``."""
    paths, leaves, _ = optree.tree_flatten_with_path(tree, none_is_leaf=True)
    for path, leaf in zip(paths, leaves):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
            return "".join(f"[{p!r}]" for p in path)
    return None


# ============================================================================ runner
class Runner:
    """Base of every trainer: owns the output directory, logs, the budgeted loop and resume.

    Args:
        config: an instance of the subclass's ``config_class``.
        output_dir: where ``checkpoint.pt``, ``metrics.json`` and ``tensorboard/`` go
            (``None``: nothing is written).

    Attributes:
        config: the settings.
        device: resolved from ``config.device``.
        output_dir: where files go, or ``None``.
        iteration: iterations done.
        history: one ``{"iteration": n, **metrics}`` row per iteration that returned metrics.
        overwrite: write over a run directory that holds a run with other settings (default
            ``False``: the first write raises ``FileExistsError``); ``train(overwrite=True)`` sets it.
    """

    config_class: ClassVar[type[RunConfig]] = RunConfig
    log_prefix: ClassVar[str] = "train"
    progress_metric: ClassVar[str | None] = None

    def __init__(self, config: RunConfig, output_dir: str | Path | None = None):
        self.config = checks.instance(config, "config", self.config_class)
        self.device = resolve_device(config.device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.overwrite = False
        self._output_checked = False
        self.logger = ScalarLogger(self.output_dir / "tensorboard" if self.output_dir is not None else None)
        self.parallel = DataParallel()  # one process, until a subclass joins torchrun's group

    def join_data_parallel(self, batch_size: int) -> TaskShard | None:
        """Join the process group torchrun launched this process in (``runners.DataParallel``) and
        return this process's share of each batch of ``batch_size`` tasks (``None`` in a single
        process). A bare ``cuda`` device becomes this process's GPU; ranks other than 0 write no
        files and show no progress. For runners whose iteration splits a batch of tasks."""
        self.parallel = DataParallel.from_environment(self.device)
        self.device = self.parallel.local_device(self.device)
        if self.parallel.world_size == 1:
            return None
        if not self.parallel.is_main:  # rank 0 alone logs and checkpoints
            self.output_dir = None
            self.logger.log_dir = None
        return self.parallel.task_shard(batch_size)

    # ----------------------------------------------------------------- what a subclass gives
    def run_iteration(self) -> dict[str, float]:
        """One unit of work (the subclass says which); returns its metrics as floats."""
        raise NotImplementedError

    def runner_state(self) -> dict[str, Any]:
        """Everything that decides the rest of the run: params, optimizer and generator states, replay ..."""
        raise NotImplementedError

    def load_runner_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`runner_state` returned (after :func:`to_saveable`)."""
        raise NotImplementedError

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Evaluate the current policy; returns named floats."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the loop
    def train_iteration(self) -> dict[str, float]:
        """Run one iteration, count it, record and log its metrics; returns ``{"iteration": n, **metrics}``."""
        number = self.iteration + 1
        try:
            metrics = self.run_iteration()
        except FloatingPointError as error:
            raise FloatingPointError(f"{type(self).__name__} stopped at iteration {number}: {error}; "
                                     f"{self._last_good()}") from error
        if "iteration" in metrics:
            raise ValueError(f"{type(self).__name__}.run_iteration returned a metric named 'iteration', which is reserved")
        bad = {k: float(v) for k, v in metrics.items() if not math.isfinite(float(v))}
        if bad:
            raise FloatingPointError(f"{type(self).__name__} stopped at iteration {number}: non-finite metrics {bad}; "
                                     f"{self._last_good()}")
        self.iteration += 1
        record = {"iteration": self.iteration, **{k: float(v) for k, v in metrics.items()}}
        if metrics:
            self.history.append(record)
            for key, value in metrics.items():
                self.logger.scalar(f"{self.log_prefix}/{key}", float(value), self.iteration)
        return record

    def train(self, progress: bool = True, max_seconds: float | None = None,
              overwrite: bool = False) -> list[dict[str, float]]:
        """Run iterations until ``config.iterations``, checkpointing every ``checkpoint_every`` and at the end.

        SIGINT / SIGTERM (handled only when called from the main thread) let the current
        iteration finish, write the checkpoint and are then re-delivered to the handler that
        was installed before, so Ctrl-C still raises ``KeyboardInterrupt`` after the save.
        A non-finite metric stops the run (``FloatingPointError`` naming the iteration) with
        nothing written, so the last good checkpoint stays as it was.

        Args:
            progress: show a tqdm bar (postfix: ``progress_metric``).
            max_seconds: also stop, after a checkpoint, at the first iteration boundary past
                this much wall time (``None``: no limit); a resume continues exactly.
            overwrite: write over a run directory that holds a run with other settings (sets
                :attr:`overwrite`); without it such a directory raises ``FileExistsError``
                before the first iteration.

        Returns:
            ``history``: one row per iteration that returned metrics (resumed rows included).
        """
        cfg = self.config
        if max_seconds is not None:
            checks.positive_number(max_seconds, "max_seconds")
        if checks.flag(overwrite, "overwrite"):
            self.overwrite = True
        self.check_output_dir()
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        received: list[int] = []
        previous: dict[int, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if received:  # a second signal: stop at once
                raise KeyboardInterrupt
            received.append(signum)

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        saved_at = None
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not (progress and self.parallel.is_main),
                   desc=type(self).__name__)
        try:
            while self.iteration < cfg.iterations and not received:
                record = self.train_iteration()
                bar.update(1)
                if self.progress_metric is not None and self.progress_metric in record:
                    bar.set_postfix({self.progress_metric: f"{record[self.progress_metric]:.4g}"})
                if self.iteration % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    saved_at = self.iteration
                if deadline is not None and time.perf_counter() > deadline:
                    break
            if saved_at != self.iteration:
                self.save_checkpoint()
        finally:
            bar.close()
            self.logger.flush()
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if received:
            signal.raise_signal(received[0])
        return self.history

    # ----------------------------------------------------------------- state and files
    def state_dict(self) -> dict[str, Any]:
        """The whole run as a ``torch.load(weights_only=True)``-able dict (what ``checkpoint.pt`` holds)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "runner": type(self).__name__,
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "history": [dict(row) for row in self.history],
            "state": to_saveable(self.runner_state()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; refuses another format, runner or settings (ValueError)."""
        self._check_compatible(state, "the state", check_config=True)
        self.load_runner_state(state["state"])
        self.iteration = int(state["iteration"])
        self.history = [dict(row) for row in state["history"]]

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically and refresh ``metrics.json``; ``None`` without an output dir."""
        if self.output_dir is None:
            return None
        self.check_output_dir()
        state = self.state_dict()
        bad = _non_finite_leaf(state["state"])
        if bad is not None:
            raise FloatingPointError(f"{type(self).__name__}: refusing to write a checkpoint at iteration {self.iteration}: "
                                     f"state{bad} holds non-finite values; {self._last_good()}")
        path = atomic_save(state, self.output_dir / CHECKPOINT_FILE)
        self.write_metrics()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from ``path`` (a ``checkpoint.pt``): see :meth:`load_state_dict`."""
        state = load_checkpoint_file(path)
        self._check_compatible(state, f"checkpoint {path}", check_config=True)
        self.load_state_dict(state)

    @classmethod
    def from_checkpoint(cls: type[R], path: str | Path, device: str = "cpu", output_dir: str | Path | None = None,
                        **runner_kwargs: Any) -> R:
        """A runner rebuilt from ``path`` with the checkpoint's settings, on ``device``.

        Args:
            path: a ``checkpoint.pt`` written by this runner class.
            device: where to load it (replaces the saved ``device`` setting).
            output_dir: where the rebuilt runner writes (``None``: nothing).
            runner_kwargs: passed on to the constructor (e.g. an ``env`` or ``env_fn``).
        """
        state = load_checkpoint_file(path)
        cls._check_compatible_class(state, f"checkpoint {path}")
        config = cls.config_class.from_dict({**state["config"], "device": device})
        runner = cls(config, output_dir=output_dir, **runner_kwargs)
        runner.load_state_dict(state)
        return runner

    def write_metrics(self, evaluation: dict[str, Any] | None = None) -> None:
        """Write ``metrics.json`` = ``{"config", "history", "eval"}`` atomically (nothing without an output dir).

        Args:
            evaluation: e.g. ``evaluate()``'s result; ``None`` keeps the ``eval`` already in the file.
        """
        if self.output_dir is None:
            return
        self.check_output_dir()
        path = self.output_dir / METRICS_FILE
        if evaluation is None and path.is_file():
            try:
                evaluation = json.loads(path.read_text()).get("eval")
            except (json.JSONDecodeError, AttributeError):
                evaluation = None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json({"config": self.config.to_dict(), "history": self.history, "eval": evaluation}, path)

    def close(self) -> None:
        """Flush and close the TensorBoard writer (idempotent). Subclasses closing envs call ``super().close()``."""
        self.logger.close()

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check_output_dir(self) -> None:
        """Refuse to write over a run of other settings in ``output_dir`` (once per runner).

        The settings of the run already there are read from its ``metrics.json`` (else its
        ``checkpoint.pt``) and compared with this runner's, ``RESUMABLE`` ones aside. Nothing
        happens without an output directory, with an empty one, with the same settings, or with
        :attr:`overwrite` set.

        Raises:
            FileExistsError: the directory holds a run of another runner or other settings (or
                one whose files cannot be read), naming the settings that differ.
        """
        if self.output_dir is None or self._output_checked or self.overwrite:
            return
        saved = self._saved_run()
        if saved is not None:
            runner, config = saved
            where = f"output_dir {self.output_dir}"
            fix = "pass overwrite=True (--overwrite) to replace it, or choose another output directory"
            if config is None:
                raise FileExistsError(f"{where} holds a run whose settings cannot be read; {fix}")
            if runner is not None and runner != type(self).__name__:
                raise FileExistsError(f"{where} holds a run of {runner!r}, not of {type(self).__name__!r}; {fix}")
            live, free = self.config.to_dict(), set(self.config.RESUMABLE)
            keys = sorted(k for k in set(config) | set(live) if k not in free and config.get(k) != live.get(k))
            if keys:
                detail = ", ".join(f"{k}: there {config.get(k)!r}, now {live.get(k)!r}" for k in keys)
                raise FileExistsError(f"{where} holds a run with different settings for {keys} ({detail}); {fix}")
        self._output_checked = True

    def _saved_run(self) -> tuple[str | None, dict[str, Any] | None] | None:
        """``(runner name or None, config or None)`` of the run in ``output_dir``; ``None`` if there is none."""
        assert self.output_dir is not None
        metrics, checkpoint = self.output_dir / METRICS_FILE, self.output_dir / CHECKPOINT_FILE
        runner = None
        if checkpoint.is_file():
            try:
                state = load_checkpoint_file(checkpoint)
                runner = state.get("runner")
                config = state["config"]
                return runner, config if isinstance(config, dict) else None
            except ValueError:
                pass  # a truncated checkpoint: metrics.json may still say which run it was
        if metrics.is_file():
            try:
                config = json.loads(metrics.read_text()).get("config")
            except (json.JSONDecodeError, AttributeError, OSError):
                config = None
            return runner, config if isinstance(config, dict) else None
        return (runner, None) if checkpoint.is_file() else None

    def _last_good(self) -> str:
        if self.output_dir is None:
            return "no output directory, nothing was written"
        path = self.output_dir / CHECKPOINT_FILE
        return (f"the last good checkpoint {path} is left as it was" if path.is_file()
                else f"no checkpoint was written to {self.output_dir}")

    # ----------------------------------------------------------------- checks
    @classmethod
    def _check_compatible_class(cls, state: dict[str, Any], where: str) -> None:
        fmt = state.get("format")
        if fmt != CHECKPOINT_FORMAT:
            age = "an older" if fmt is None or (isinstance(fmt, int) and fmt < CHECKPOINT_FORMAT) else "another"
            raise ValueError(f"{where} was written by {age} version of functional_metarl (checkpoint format {fmt!r}, "
                             f"this version reads format {CHECKPOINT_FORMAT}) and cannot be resumed; start a new run")
        if state.get("runner") != cls.__name__:
            raise ValueError(f"{where} was written by {state.get('runner')!r}, not by {cls.__name__!r}")

    def _check_compatible(self, state: dict[str, Any], where: str, check_config: bool) -> None:
        checks.instance(state, "state", dict)
        self._check_compatible_class(state, where)
        if check_config:
            saved, live = state["config"], self.config.to_dict()
            free = set(self.config.RESUMABLE)
            keys = sorted(k for k in set(saved) | set(live) if k not in free and saved.get(k) != live.get(k))
            if keys:
                detail = ", ".join(f"{k}: saved {saved.get(k)!r}, now {live.get(k)!r}" for k in keys)
                raise ValueError(f"{where} was written with different settings for {keys} ({detail}); "
                                 f"only {sorted(free)} may differ on resume")
