"""MAML-A2C as pure functions: an actor-critic (``nn.nature_cnn_actor_critic``) adapted to each
task by A2C steps on an n-step batch, meta-trained on the same loss (or PPO's) after adaptation.

The inner loss of one task (:func:`a2c_loss`), on an :class:`A2CBatch` of ``T`` steps of ``E``
parallel envs (``obs [T, E, C, H, W]``, the observation after the last step ``bootstrap_obs [E,
C, H, W]``), with ``(logits, V) = net(obs)``::

    A_t   = GAE(lambda) of the TD errors r_t + gamma (1 - done_t) V(s_{t+1}) - V(s_t), V(s_T) the
            bootstrap value;  R_t = A_t + V(s_t)         (A and R are constants: V is detached)
    loss  = -mean(log pi(a_t | s_t) A_t) + value_coef * mean((R_t - V(s_t))^2)
            - entropy_coef * mean(H(pi(. | s_t)))

with ``gamma = 0.99``, ``value_coef = 0.5``, ``entropy_coef = 0.01`` (A3C's / the issue's).
``gae_lambda = 1`` (default) gives A2C's n-step returns; ``0`` the one-step TD error of the
original sketch. Rewards are clipped to their sign by default (``clip_rewards``, the Atari
protocol; the envs return raw scores).

Adaptation (:func:`adapt_a2c`) runs every task of a meta-batch at once, as ``meta.adaptation``
does: stacked per-task copies of the params (leaves ``[N, *shape]``), the gradient of the *sum*
of the task losses with respect to them (each task's own inner gradient), the network as one
grouped-convolution pass (``apply_stacked``), and the inner optimizer vmapped over tasks.
Second order (default) differentiates through the inner gradients (``torch.func`` nests);
``first_order=True`` treats them as constants.

The outer loss (:func:`maml_a2c_loss`) is the mean over tasks of the A2C loss of the adapted
params on each task's post-update batch, or (``outer="ppo"``) PPO's clipped surrogate with the
ratio to the adapted policy that collected that batch, plus the same value and entropy terms.
:func:`maml_a2c` packs the meta-gradient and a first-order meta-optimizer (e.g.
``optim.chain(optim.clip_by_global_norm(0.5), optim.adam(lr))``) into a ``meta.MetaStep``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
from torch.func import grad, grad_and_value, vmap

from .. import checks
from ..distributions import CATEGORICAL
from ..nn import ActorCriticCNN
from ..optim import GradientTransformation, apply_updates
from ..rl import ppo_clip_loss
from ..tree import Params, ravel, tree_detach, tree_map
from .meta_steps import MetaStep, MetaStepStats

__all__ = [
    "A2CBatch",
    "A2CConfig",
    "nstep_advantages",
    "a2c_loss",
    "a2c_task_losses",
    "adapt_a2c",
    "maml_a2c_loss",
    "maml_a2c_gradient",
    "maml_a2c",
]


class A2CBatch(NamedTuple):
    """An n-step batch: ``T`` steps of ``E`` envs of one task (leaves ``[T, E, ...]``), or of
    ``N`` tasks (a leading task axis, ``[N, T, E, ...]``).

    obs: ``uint8 [T, E, C, H, W]``; actions: integer ``[T, E]``; rewards: ``[T, E]`` (raw);
    dones: ``[T, E]``, 1 where the episode ended at step ``t`` (the next obs is a new episode's);
    bootstrap_obs: ``[E, C, H, W]``, the observation after step ``T - 1``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    bootstrap_obs: torch.Tensor


@dataclass(frozen=True)
class A2CConfig:
    """The A2C loss's settings (see the module docstring); ``clip_eps`` is the PPO outer loss's
    clip range."""

    gamma: float = 0.99
    gae_lambda: float = 1.0
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    clip_rewards: bool = True
    clip_eps: float = 0.2

    def __post_init__(self):
        checks.probability(self.gamma, "gamma")
        checks.probability(self.gae_lambda, "gae_lambda")
        checks.non_negative_number(self.value_coef, "value_coef")
        checks.non_negative_number(self.entropy_coef, "entropy_coef")
        checks.flag(self.clip_rewards, "clip_rewards")
        checks.positive_number(self.clip_eps, "clip_eps")


def nstep_advantages(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, bootstrap_value: torch.Tensor,
                     gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over an n-step segment that may hold episode ends: ``(advantages, returns)``, both
    ``[T, ...]``.

    ``delta_t = r_t + gamma (1 - done_t) V_{t+1} - V_t`` with ``V_T = bootstrap_value [...]``,
    ``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}``, ``R_t = A_t + V_t``. rewards, values,
    dones: ``[T, ...]``. Differentiable as written (callers detach ``values`` for A2C's targets).
    """
    checks.floating_tensor(rewards, "rewards")
    checks.same_shape(values, "values", rewards, "rewards")
    checks.same_shape(dones, "dones", rewards, "rewards")
    checks.tensor(bootstrap_value, "bootstrap_value", shape=tuple(rewards.shape[1:]))
    checks.probability(gamma, "gamma")
    checks.probability(gae_lambda, "gae_lambda")
    not_done = 1.0 - dones.to(rewards.dtype)
    next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)])
    deltas = rewards + gamma * not_done * next_values - values
    advantages = []
    running = torch.zeros_like(bootstrap_value, dtype=rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):  # T is an n-step length (5 to 128): a short loop
        running = deltas[t] + gamma * gae_lambda * not_done[t] * running
        advantages.append(running)
    advantages = torch.stack(advantages[::-1])
    return advantages, advantages + values


def _loss_from_outputs(logits: torch.Tensor, values: torch.Tensor, bootstrap_value: torch.Tensor, batch: A2CBatch,
                       config: A2CConfig, old_log_prob: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One task's loss from the net's outputs (``logits [T, E, A]``, ``values [T, E]``,
    ``bootstrap_value [E]``): ``(loss, entropy)``; PPO's clipped surrogate when ``old_log_prob``."""
    rewards = batch.rewards.to(values.dtype)
    if config.clip_rewards:
        rewards = torch.sign(rewards)
    advantages, returns = nstep_advantages(rewards, values.detach(), batch.dones, bootstrap_value.detach(),
                                           config.gamma, config.gae_lambda)
    dist = CATEGORICAL.params(logits)
    log_prob = CATEGORICAL.log_prob(dist, batch.actions)
    entropy = CATEGORICAL.entropy(dist).mean()
    if old_log_prob is None:
        policy_loss = -(log_prob * advantages).mean()
    else:
        policy_loss = ppo_clip_loss(log_prob, old_log_prob, advantages, torch.ones_like(advantages), config.clip_eps)
    value_loss = ((returns - values) ** 2).mean()
    return policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy, entropy


def _log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return CATEGORICAL.log_prob(CATEGORICAL.params(logits), actions)


def _check_net(net: object) -> ActorCriticCNN:
    return checks.instance(net, "net", ActorCriticCNN)


def _check_batch(batch: object, name: str, net: ActorCriticCNN, task_axis: bool) -> A2CBatch:
    checks.instance(batch, name, A2CBatch)
    lead = 3 if task_axis else 2
    axes = "[N, T, E]" if task_axis else "[T, E]"
    obs = checks.tensor(batch.obs, f"{name}.obs", shape=(*([-1] * lead), *net.obs_shape))
    steps = tuple(obs.shape[:lead])
    checks.integer_tensor(batch.actions, f"{name}.actions", shape=steps)
    checks.floating_tensor(batch.rewards, f"{name}.rewards", shape=steps)
    checks.tensor(batch.dones, f"{name}.dones", shape=steps)
    boot = (steps[0], steps[2]) if task_axis else (steps[1],)
    checks.tensor(batch.bootstrap_obs, f"{name}.bootstrap_obs", shape=(*boot, *net.obs_shape))
    if steps[lead - 2] == 0:
        raise ValueError(f"{name}: an n-step batch needs T >= 1 steps, got leaves {axes} = {steps}")
    return batch


def _per_step(train: object, steps: int, net: ActorCriticCNN) -> tuple[A2CBatch, ...]:
    """The inner batch of every step (one batch for all steps, or a tuple of ``steps``), checked."""
    checks.positive_int(steps, "steps")
    if isinstance(train, A2CBatch):
        batches = (train,) * steps
    elif isinstance(train, (tuple, list)) and all(isinstance(b, A2CBatch) for b in train):
        if len(train) != steps:
            raise ValueError(f"train: got {len(train)} per-step inner batches for {steps} inner steps; expected one "
                             "per step")
        batches = tuple(train)
    else:
        raise checks.ArgumentTypeError(f"train must be an A2CBatch or a tuple of A2CBatches (one per inner step), "
                                       f"got {type(train).__name__}")
    for k, b in enumerate(batches):
        if k == 0 or b is not batches[k - 1]:
            _check_batch(b, f"train[{k}]", net, task_axis=True)
    return batches


def a2c_loss(params: Params, batch: A2CBatch, net: ActorCriticCNN, config: A2CConfig = A2CConfig()) -> torch.Tensor:
    """The A2C loss of one task (see the module docstring): batch leaves ``[T, E, ...]`` -> 0-d."""
    _check_net(net)
    _check_batch(batch, "batch", net, task_axis=False)
    checks.instance(config, "config", A2CConfig)
    logits, values = net.apply(params, batch.obs)
    _, bootstrap_value = net.apply(params, batch.bootstrap_obs)
    return _loss_from_outputs(logits, values, bootstrap_value, batch, config)[0]


def _task_losses(stacked: Params, batch: A2CBatch, net: ActorCriticCNN, config: A2CConfig,
                 old_log_prob: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(losses [N], entropies [N])`` of per-task params on per-task batches (trusted inputs)."""
    logits, values = net.apply_stacked(stacked, batch.obs)
    _, bootstrap_value = net.apply_stacked(stacked, batch.bootstrap_obs)
    if old_log_prob is None:
        return vmap(lambda lg, v, bv, b: _loss_from_outputs(lg, v, bv, b, config))(logits, values, bootstrap_value,
                                                                                   batch)
    return vmap(lambda lg, v, bv, b, o: _loss_from_outputs(lg, v, bv, b, config, o))(
        logits, values, bootstrap_value, batch, old_log_prob)


def a2c_task_losses(stacked: Params, batch: A2CBatch, net: ActorCriticCNN,
                    config: A2CConfig = A2CConfig()) -> torch.Tensor:
    """:func:`a2c_loss` of every task at once: params leaves ``[N, *shape]``, batch leaves
    ``[N, T, E, ...]`` -> ``[N]`` (one grouped-convolution pass, the loss vmapped over tasks)."""
    _check_net(net)
    _check_batch(batch, "batch", net, task_axis=True)
    checks.instance(config, "config", A2CConfig)
    return _task_losses(stacked, batch, net, config)[0]


def _adaptation_path(params: Params, batches: Sequence[A2CBatch], net: ActorCriticCNN,
                     inner_opt: GradientTransformation, config: A2CConfig, first_order: bool,
                     params_per_task: bool) -> tuple[list[Params], list[torch.Tensor]]:
    """Stacked params before each inner step and after the last, and each step's task losses."""
    num_tasks = batches[0].obs.shape[0]
    stacked = params if params_per_task else tree_map(lambda p: p.expand(num_tasks, *p.shape), params)
    state = vmap(inner_opt.init)(stacked)
    path, losses = [stacked], []
    for batch in batches:
        def total(sp: Params, b: A2CBatch = batch) -> tuple[torch.Tensor, torch.Tensor]:
            task = _task_losses(sp, b, net, config)[0]
            return task.sum(), task
        grads, task = grad(total, has_aux=True)(stacked)
        if first_order:
            grads = tree_detach(grads)
        updates, state = vmap(inner_opt.update)(grads, state, stacked)
        stacked = apply_updates(stacked, updates)
        path.append(stacked)
        losses.append(task)
    return path, losses


def adapt_a2c(params: Params, train: A2CBatch | Sequence[A2CBatch], net: ActorCriticCNN,
              inner_opt: GradientTransformation, *, config: A2CConfig = A2CConfig(), steps: int = 1,
              first_order: bool = False, params_per_task: bool = False) -> Params:
    """Every task's params after ``steps`` A2C steps of ``inner_opt`` on its inner batches: leaves
    ``[N, *shape]``, differentiable in ``params`` (twice unless ``first_order``).

    Args:
        params: shared params, or (``params_per_task``) one set per task, leaves ``[N, *shape]``.
        train: one :class:`A2CBatch` (leaves ``[N, T, E, ...]``) for every step, or one per step.
        net: the actor-critic template.
        inner_opt: the inner optimizer (``optim.sgd(lr)``, ``optim.meta_sgd``, ...), per task.
        config: the A2C loss's settings.
        steps: inner steps.
        first_order: treat the inner gradients as constants.
        params_per_task: whether ``params`` already lead with the task axis.
    """
    _check_net(net)
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    checks.instance(config, "config", A2CConfig)
    checks.flag(first_order, "first_order")
    checks.flag(params_per_task, "params_per_task")
    batches = _per_step(train, steps, net)
    return _adaptation_path(params, batches, net, inner_opt, config, first_order, params_per_task)[0][-1]


_OUTER = ("a2c", "ppo")


def _outer_loss(params: Params, batches: Sequence[A2CBatch], valid: A2CBatch, net: ActorCriticCNN,
                inner_opt: GradientTransformation, config: A2CConfig, first_order: bool,
                old_log_prob: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    path, inner = _adaptation_path(params, batches, net, inner_opt, config, first_order, False)
    losses, entropy = _task_losses(path[-1], valid, net, config, old_log_prob)
    aux = {"inner_loss": inner[0].mean().detach(), "entropy": entropy.mean().detach()}
    return losses.mean(), aux



def _check_meta_inputs(net: ActorCriticCNN, inner_opt: GradientTransformation, config: A2CConfig, first_order: bool,
                       train: A2CBatch | Sequence[A2CBatch], steps: int, valid: A2CBatch,
                       old_log_prob: torch.Tensor | None) -> tuple[A2CBatch, ...]:
    """The public meta-loss / meta-gradient's boundary checks; returns the per-step train batches."""
    _check_net(net)
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    checks.instance(config, "config", A2CConfig)
    checks.flag(first_order, "first_order")
    batches = _per_step(train, steps, net)
    _check_batch(valid, "valid", net, task_axis=True)
    if old_log_prob is not None:
        checks.floating_tensor(old_log_prob, "old_log_prob", shape=tuple(valid.rewards.shape))
    return batches


def maml_a2c_loss(params: Params, train: A2CBatch | Sequence[A2CBatch], valid: A2CBatch, net: ActorCriticCNN,
                  inner_opt: GradientTransformation, *, config: A2CConfig = A2CConfig(), steps: int = 1,
                  first_order: bool = False, old_log_prob: torch.Tensor | None = None) -> torch.Tensor:
    """The meta-loss: the mean over tasks of the outer loss of the adapted params on ``valid``
    (leaves ``[N, T, E, ...]``) -> 0-d; differentiate it with ``torch.func.grad`` (or use
    :func:`maml_a2c_gradient`).

    ``old_log_prob [N, T, E]``: the log-probabilities of ``valid.actions`` under the policies
    that collected ``valid``; given, the outer policy term is PPO's clipped surrogate
    (``config.clip_eps``) instead of A2C's.
    """
    batches = _check_meta_inputs(net, inner_opt, config, first_order, train, steps, valid, old_log_prob)
    return _outer_loss(params, batches, valid, net, inner_opt, config, first_order, old_log_prob)[0]


def maml_a2c_gradient(params: Params, train: A2CBatch | Sequence[A2CBatch], valid: A2CBatch, net: ActorCriticCNN,
                      inner_opt: GradientTransformation, *, config: A2CConfig = A2CConfig(), steps: int = 1,
                      first_order: bool = False, old_log_prob: torch.Tensor | None = None,
                      ) -> tuple[Params, torch.Tensor, dict[str, torch.Tensor]]:
    """``(meta-gradient, meta-loss, aux)`` of :func:`maml_a2c_loss` at ``params``: exact second
    order through the conv net by nested ``torch.func.grad`` (first order with ``first_order``).
    ``aux``: the mean inner loss before adaptation and the outer entropy (detached)."""
    batches = _check_meta_inputs(net, inner_opt, config, first_order, train, steps, valid, old_log_prob)
    grads, (loss, aux) = grad_and_value(
        lambda p: _outer_loss(p, batches, valid, net, inner_opt, config, first_order, old_log_prob),
        has_aux=True)(params)
    return grads, loss.detach(), aux


def maml_a2c(net: ActorCriticCNN, inner_opt: GradientTransformation, meta_opt: GradientTransformation, *,
             config: A2CConfig = A2CConfig(), steps: int = 1, first_order: bool = False, outer: str = "a2c",
             epochs: int = 1) -> MetaStep:
    """The MAML-A2C meta-step as a ``meta.MetaStep``: ``init(params) -> meta_opt``'s state;
    ``update(params, state, train, valid, meta_grad=None) -> (params, state, stats)``.

    Each update takes ``epochs`` steps of ``meta_opt`` (e.g. ``optim.chain(
    optim.clip_by_global_norm(0.5), optim.adam(lr))``) on the meta-gradient of the batches
    ``train`` / ``valid`` (leaves ``[N, T, E, ...]``). ``outer="a2c"``: the outer loss is the
    A2C loss (``epochs`` is then 1); ``outer="ppo"``: PPO's clipped surrogate, the ratio to the
    adapted policies at the start of the update (which collected ``valid``), reusing the batch
    for ``epochs`` steps. ``stats``: ``meta_loss`` (first epoch), ``loss_after`` (the outer loss
    after the update), ``grad_norm`` (before clipping), ``inner_loss``, ``entropy``.
    """
    _check_net(net)
    checks.instance(inner_opt, "inner_opt", GradientTransformation)
    checks.instance(meta_opt, "meta_opt", GradientTransformation)
    checks.instance(config, "config", A2CConfig)
    checks.positive_int(steps, "steps")
    checks.flag(first_order, "first_order")
    checks.one_of(outer, "outer", _OUTER)
    checks.positive_int(epochs, "epochs")
    if outer == "a2c" and epochs != 1:
        raise ValueError(f"epochs: the A2C outer loss is on-policy and takes one step per batch (epochs=1); got "
                         f"{epochs} (use outer='ppo' to reuse the batch)")

    def update(params: Params, state: Any, train: A2CBatch | Sequence[A2CBatch], valid: A2CBatch,
               meta_grad: Any = None) -> tuple[Params, Any, MetaStepStats]:
        if meta_grad is not None:
            raise ValueError("meta_grad: the MAML-A2C meta-step computes its own meta-gradient; pass None")
        batches = _per_step(train, steps, net)
        _check_batch(valid, "valid", net, task_axis=True)
        old_log_prob = None
        if outer == "ppo":
            with torch.no_grad():
                adapted = _adaptation_path(params, batches, net, inner_opt, config, True, False)[0][-1]
                old_log_prob = _log_probs(net.apply_stacked(adapted, valid.obs)[0], valid.actions)
        stats: MetaStepStats = {}
        for epoch in range(epochs):
            grads, (loss, aux) = grad_and_value(
                lambda p: _outer_loss(p, batches, valid, net, inner_opt, config, first_order, old_log_prob),
                has_aux=True)(params)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"MAML-A2C meta-loss is not finite ({float(loss)}); stopping before the "
                                         "update")
            if epoch == 0:
                stats = {"meta_loss": float(loss), "grad_norm": float(ravel(grads)[0].norm()),
                         "inner_loss": float(aux["inner_loss"]), "entropy": float(aux["entropy"])}
            updates, state = meta_opt.update(grads, state, params)
            params = tree_map(lambda p, u: (p + u).detach(), params, updates)
        with torch.no_grad():
            stats["loss_after"] = float(_outer_loss(params, batches, valid, net, inner_opt, config, True,
                                                    old_log_prob)[0])
        return params, state, stats

    return MetaStep(lambda params: meta_opt.init(params), update)
