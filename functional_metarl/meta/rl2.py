"""RL² (Duan et al. 2016) trained with PPO, as pure functions.

A recurrent policy (``nn.gru_actor_critic``) plays a whole *trial* -- ``n`` episodes of one task
-- with its hidden state carried across the episode boundaries inside the trial; the state is
the policy's initial one (zeros) at the start of every trial and nowhere else. Each trial in a
batch has its own task. The RL objective is the total reward of the trial, so GAE runs over the
whole trial (episode ends inside it do not cut the return; the value after the trial's last step
is 0).

Backprop: **whole-trial BPTT**. The PPO loss re-runs the GRU over the entire trial from the zero
state and differentiates through every step (no truncation); PPO minibatches split the batch
along trials, never along time.

Pieces:

- :func:`rl2_rollout` -- one trial for every task of a batch of any discrete-action
  :class:`envs.TaskFamily`, actions from pre-drawn Gumbel noise (``argmax(logits + g)``, an
  exact categorical sample), env noise pre-drawn too;
- :func:`rl2_advantages` -- GAE over the trial (``rl.gae``) and the value targets;
- :func:`rl2_ppo_loss` -- clipped surrogate + value loss - entropy bonus, on a minibatch;
- :func:`rl2_train_step` -- rollout + ``epochs`` x ``num_minibatches`` Adam steps on the loss.

Everything is tensors on the params' device, with no per-step Python env objects and no reads of
tensor values, so :func:`rl2_train_step` can be passed to ``torch.compile`` (with ``grad_fn`` the
``torch.func`` gradient); eager is the default.
The randomness of a step is one :class:`RL2Noise` drawn up front (:func:`sample_rl2_noise`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import optree
import torch

from .. import checks
from ..envs.protocol import TaskFamily, noise_at
from ..nn.recurrent import RecurrentFunctional, rl2_inputs
from ..optim import GradientTransformation, apply_updates
from ..distributions import categorical_entropy, categorical_log_prob
from ..rl.losses import masked_episode_mean, normalize_advantages, ppo_clip_loss
from ..rl.returns import gae
from ..tree import Params, tree_map, tree_norm
from .meta_steps import TaskShard

__all__ = [
    "Trial",
    "RL2Noise",
    "PPOConfig",
    "sample_rl2_noise",
    "gumbel_sample",
    "rl2_rollout",
    "rl2_advantages",
    "rl2_ppo_loss",
    "rl2_ppo_grad",
    "rl2_train_step",
]


class Trial(NamedTuple):
    """A batch of trials, time-major. ``T`` = trial length, ``B`` = trials (one task each).

    inputs ``[T, B, in_dim]`` (what the policy saw: obs, previous action / reward / done),
    actions ``[T, B]`` int64, rewards ``[T, B]``, dones ``[T, B]`` bool (episode ends),
    log_probs ``[T, B]`` and values ``[T, B]`` of the acting policy.
    """

    inputs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor


class RL2Noise(NamedTuple):
    """All the randomness of one training step.

    env: the env's trial noise (leaves ``[T, B]``); gumbel_u: uniforms ``[T, B, A]`` for the
    actions; perms: ``[epochs, B]`` int64, one permutation of the trials per PPO epoch.
    """

    env: Any
    gumbel_u: torch.Tensor
    perms: torch.Tensor


class PPOConfig(NamedTuple):
    """PPO settings. ``gamma`` / ``gae_lambda`` for GAE over the trial; ``num_minibatches``
    must divide the number of trials. ``reward_scale`` keeps the value targets of long trials
    O(1): with a value loss of a return of ~50 the clipped global gradient is almost all value
    gradient and the policy barely moves. ``target_kl``: KL early stopping -- the PPO epochs stop
    at the first minibatch whose ``kl`` (:func:`rl2_ppo_loss`; the policy before that minibatch's update against
    the acting one) exceeds it, and that minibatch is not applied; ``None`` runs every epoch."""

    epochs: int = 4
    num_minibatches: int = 4
    clip_eps: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.3
    normalize_advantages: bool = True
    reward_scale: float = 1.0  # rewards are multiplied by this for the advantages and value targets
    target_kl: float | None = None


def _check_ppo_config(config: PPOConfig, num_trials: int) -> None:
    checks.instance(config, "config", PPOConfig)
    for name in ("epochs", "num_minibatches"):
        checks.positive_int(getattr(config, name), f"config.{name}")
    if num_trials % config.num_minibatches != 0:
        raise ValueError(f"config.num_minibatches ({config.num_minibatches}) must divide the number of trials ({num_trials})")
    for name in ("clip_eps", "reward_scale"):
        checks.positive_number(getattr(config, name), f"config.{name}")
    for name in ("value_coef", "entropy_coef"):
        checks.non_negative_number(getattr(config, name), f"config.{name}")
    for name in ("gamma", "gae_lambda"):
        checks.probability(getattr(config, name), f"config.{name}")
    checks.flag(config.normalize_advantages, "config.normalize_advantages")
    if config.target_kl is not None:
        checks.positive_number(config.target_kl, "config.target_kl")


def _trial_steps(env: TaskFamily) -> int:
    """The steps of one RL² trial: the family's ``trial_length`` (bandits, tabular MDPs), else one episode."""
    return getattr(env, "trial_length", env.episode_length)


def sample_rl2_noise(
    env: TaskFamily, num_trials: int, epochs: int, generator: torch.Generator | None = None,
    device: torch.device | str | None = None, *, num_steps: int | None = None,
) -> RL2Noise:
    """Draw one training step's :class:`RL2Noise` for ``num_trials`` trials of ``env``.

    Args:
        env: a :class:`envs.TaskFamily` with discrete actions.
        num_trials: ``B``, one task each.
        epochs: PPO epochs (one permutation of the trials each); 0 for a rollout only.
        generator: the source of every draw (env noise, then the Gumbel uniforms, then the perms).
        num_steps: ``T``, the trial length (default ``env.trial_length``, else ``env.episode_length``).
    """
    checks.instance(env, "env", TaskFamily)
    checks.positive_int(num_trials, "num_trials")
    checks.non_negative_int(epochs, "epochs")
    T = _trial_steps(env) if num_steps is None else checks.positive_int(num_steps, "num_steps")
    device = generator.device if generator is not None and device is None else device
    env_noise = env.sample_noise(T, (num_trials,), generator, device=device)
    u = torch.rand(T, num_trials, env.action_size, generator=generator, device=device)
    perms = torch.stack([torch.randperm(num_trials, generator=generator, device=device) for _ in range(epochs)]) \
        if epochs > 0 else torch.zeros(0, num_trials, dtype=torch.int64, device=device)
    return RL2Noise(env_noise, u, perms)


def gumbel_sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A categorical sample ``argmax(logits - log(-log u))`` (Gumbel-max). ``logits, u: [..., A]``
    (``u`` uniform in (0, 1)) -> ``[...]`` int64."""
    if u.shape != logits.shape:
        raise ValueError(f"u expected the shape of logits {tuple(logits.shape)}, got {tuple(u.shape)}")
    tiny = torch.finfo(u.dtype).tiny
    g = -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))
    return torch.argmax(logits + g, dim=-1)


def _tasks_batch(tasks: Any) -> int:
    return optree.tree_leaves(tasks)[0].shape[0]


def rl2_rollout(
    params: Params, tasks: Any, env_noise: Any, gumbel_u: torch.Tensor, env: TaskFamily, policy: RecurrentFunctional, *,
    hidden: torch.Tensor | None = None,
) -> Trial:
    """Play one trial of ``T`` steps on every task of ``tasks`` (leading axis ``B``).

    Args:
        params: the policy's params.
        tasks: ``B`` tasks of ``env``, leaves ``[B, ...]``.
        env_noise: the env's trial noise, leaves ``[T, B, ...]`` (``env.sample_noise(T, (B,), gen)``).
        gumbel_u: ``[T, B, A]`` uniforms for the Gumbel-max action samples; ``T`` is the trial length.
        env: any :class:`envs.TaskFamily` with discrete actions (``action_size = A``).
        policy: ``nn.gru_actor_critic(obs_dim, A)`` (with ``prev_obs_input`` the previous
            observation, zeros at the trial's start, goes into its input too).
        hidden: the policy state at the start of the trial, ``[B, policy.state_size]`` (default zeros).

    Returns:
        a :class:`Trial`, time-major ``[T, B, ...]``. The hidden state is carried through every
        step, across episode ends (``done``) inside the trial. Runs without gradients.
    """
    checks.instance(policy, "policy", RecurrentFunctional)
    checks.instance(env, "env", TaskFamily)
    if not env.discrete_actions:
        raise TypeError(f"env must have discrete actions for RL², got {type(env).__name__} with continuous actions")
    A = env.action_size
    if policy.num_actions != A or (policy.obs_dim,) != tuple(env.obs_shape):
        raise ValueError(f"policy expected obs_dim {tuple(env.obs_shape)} and num_actions {A} to match env, "
                         f"got {policy.obs_dim} and {policy.num_actions}")
    num = _tasks_batch(tasks)
    checks.floating_tensor(gumbel_u, "gumbel_u", ndim=3)
    T = gumbel_u.shape[0]
    checks.tensor(gumbel_u, "gumbel_u", shape=(T, num, A))
    for leaf in optree.tree_leaves(env_noise):
        if tuple(leaf.shape[:2]) != (T, num):
            raise ValueError(f"env_noise leaves expected shape {(T, num)} [T, B, ...], got {tuple(leaf.shape)}")
    device = gumbel_u.device
    dtype = next(iter(params.values())).dtype
    if hidden is None:
        hidden = policy.initial_state((num,), device=device, dtype=dtype)
    with torch.no_grad():
        state, obs = env.reset(tasks, noise_at(env_noise, 0))
        prev_a = torch.full((num,), -1, dtype=torch.int64, device=device)
        prev_r = torch.zeros(num, dtype=dtype, device=device)
        prev_d = torch.zeros(num, dtype=torch.bool, device=device)
        prev_obs = torch.zeros_like(obs) if policy.prev_obs_input else None
        h = hidden
        out: dict[str, list[torch.Tensor]] = {k: [] for k in Trial._fields}
        for t in range(T):
            x = rl2_inputs(obs, prev_a, prev_r, prev_d, A, prev_obs)
            logits, value, h = policy.apply(params, x, h)
            action = gumbel_sample(logits, gumbel_u[t])
            obs_t = obs
            state, obs, reward, done = env.step(state, action, tasks, noise_at(env_noise, t))
            for k, v in zip(Trial._fields, (x, action, reward, done, categorical_log_prob(logits, action), value)):
                out[k].append(v)
            prev_a, prev_r, prev_d = action, reward, done
            prev_obs = obs_t if prev_obs is not None else None  # the state the action was taken in
    return Trial(*(torch.stack(out[k]) for k in Trial._fields))


def rl2_advantages(trial: Trial, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the whole trial and value targets: ``(advantages [T, B], returns [T, B])``.

    Episode ends inside the trial do not stop the recursion (the trial is the RL² episode);
    the value after the last step is 0. ``returns = advantages + values`` (the GAE(λ) return).
    """
    checks.instance(trial, "trial", Trial)
    checks.probability(gamma, "gamma")
    checks.probability(gae_lambda, "gae_lambda")
    mask = torch.ones_like(trial.rewards)
    adv = gae(trial.rewards, trial.values, mask, gamma, gae_lambda)
    return adv, adv + trial.values


def rl2_ppo_loss(
    params: Params, trial: Trial, advantages: torch.Tensor, returns: torch.Tensor, policy: RecurrentFunctional, *,
    clip_eps: float = 0.2, value_coef: float = 0.5, entropy_coef: float = 0.01,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO loss on a batch of trials, differentiated through the whole trial (no truncation).

    ``loss = ppo_clip(ratio, A) + value_coef * 0.5 * mean((V - R)^2) - entropy_coef * mean(H(pi))``
    with the GRU re-run from the zero state over ``trial.inputs [T, B, in_dim]``. ``advantages``,
    ``returns``: ``[T, B]`` (constants). Returns ``(loss [], {"policy", "value", "entropy",
    "approx_kl", "kl"})``: ``approx_kl`` is ``mean(log pi_old - log pi)``, ``kl`` the estimator
    ``mean(ρ - 1 - log ρ)`` with ``ρ = pi / pi_old`` (Schulman's k3: unbiased for KL(pi_old || pi)
    and never negative, so the one the KL early stopping reads).
    """
    T, B = trial.actions.shape
    for name, x in (("advantages", advantages), ("returns", returns)):
        if tuple(x.shape) != (T, B):
            raise ValueError(f"{name} expected shape {(T, B)} (same as trial.actions), got {tuple(x.shape)}")
    h0 = policy.initial_state((B,), device=trial.inputs.device, dtype=trial.inputs.dtype)
    logits, values, _ = policy.apply_sequence(params, trial.inputs, h0)
    log_prob = categorical_log_prob(logits, trial.actions)
    mask = torch.ones_like(log_prob)
    policy_loss = ppo_clip_loss(log_prob, trial.log_probs, advantages, mask, clip_eps)
    value_loss = 0.5 * masked_episode_mean((values - returns.detach()) ** 2, mask)
    entropy = masked_episode_mean(categorical_entropy(logits), mask)
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    approx_kl = masked_episode_mean((trial.log_probs - log_prob).detach(), mask)
    log_ratio = (log_prob - trial.log_probs).detach()
    kl = masked_episode_mean(torch.exp(log_ratio) - 1.0 - log_ratio, mask)  # >= 0 term by term
    return loss, {"policy": policy_loss.detach(), "value": value_loss.detach(), "entropy": entropy.detach(),
                  "approx_kl": approx_kl, "kl": kl}


def rl2_ppo_grad(
    params: Params, trial: Trial, advantages: torch.Tensor, returns: torch.Tensor, policy: RecurrentFunctional, *,
    clip_eps: float = 0.2, value_coef: float = 0.5, entropy_coef: float = 0.01,
) -> tuple[Params, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``grad_and_value(rl2_ppo_loss, has_aux=True)`` computed with ``torch.autograd.grad`` on
    detached copies of ``params`` (the inputs are not touched): the same numbers, faster eager on
    CPU for the GRU loop than ``torch.func.grad``'s per-op dispatch (``docs/results/benchmarks.md``). It is the
    eager default of :func:`rl2_train_step`; use the ``torch.func`` form under ``torch.compile``
    or when nesting transforms."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss, aux = rl2_ppo_loss(leaves, trial, advantages, returns, policy, clip_eps=clip_eps, value_coef=value_coef,
                             entropy_coef=entropy_coef)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return dict(zip(leaves, grads)), (loss.detach(), aux)


def _minibatch(trial: Trial, idx: torch.Tensor) -> Trial:
    return Trial(*(x[:, idx] for x in trial))


def rl2_train_step(
    params: Params, opt_state: Any, tasks: Any, noise: RL2Noise, env: Any, policy: RecurrentFunctional,
    optimizer: GradientTransformation, *, config: PPOConfig = PPOConfig(),
    grad_fn: Callable[..., Any] | None = None, shard: TaskShard | None = None,
) -> tuple[Params, Any, dict[str, torch.Tensor]]:
    """One RL² iteration: a trial on each of the ``B`` tasks, then ``config.epochs`` PPO epochs of
    ``config.num_minibatches`` minibatches (trials split by ``noise.perms``), each an ``optimizer``
    step on :func:`rl2_ppo_loss`. Gradient clipping is part of the optimizer, composed by the
    caller: ``optim.chain(optim.clip_by_global_norm(max_grad_norm), optim.adam(lr))`` (as
    ``runners.RL2Trainer`` does); the step itself never clips.

    Returns ``(params, opt_state, stats)``; ``stats`` are 0-d tensors (``trial_return``: mean total
    reward per trial of the rollout; the losses, ``approx_kl`` and the global ``grad_norm`` before
    any clipping, of the last minibatch computed; with ``config.target_kl`` also ``updates``, the
    optimizer steps taken before the KL stop -- the stop reads that one scalar per minibatch, the
    step's only read of a tensor value). ``grad_fn`` replaces the default :func:`rl2_ppo_grad` (e.g. with a compiled
    ``torch.func.grad_and_value(rl2_ppo_loss, has_aux=True)``); it takes the loss's arguments.

    ``shard``: data-parallel training (``runners.DataParallel``): ``tasks``, ``noise.env`` and
    ``noise.gumbel_u`` hold this process's trials (``shard.tasks`` of the batch) and
    ``noise.perms`` the whole batch's permutations; the advantages are normalised with the whole
    batch's moments and every minibatch's gradient, losses and KL are the whole minibatch's (each
    process's members weighted by their number), so every process takes the identical step.
    """
    local = _tasks_batch(tasks)
    num = local if shard is None else checks.instance(shard, "shard", TaskShard).total
    if shard is not None and shard.size != local:
        raise ValueError(f"tasks: the shard holds {shard.size} trials but tasks has {local}")
    _check_ppo_config(config, num)
    if tuple(noise.perms.shape) != (config.epochs, num):
        raise ValueError(f"noise.perms expected shape {(config.epochs, num)} [epochs, B], got {tuple(noise.perms.shape)}")
    mean = (lambda x, n: x) if shard is None else shard.mean
    grad_fn = rl2_ppo_grad if grad_fn is None else grad_fn
    trial = rl2_rollout(params, tasks, noise.env, noise.gumbel_u, env, policy)
    scaled = trial._replace(rewards=trial.rewards * config.reward_scale)
    advantages, returns = rl2_advantages(scaled, config.gamma, config.gae_lambda)
    if config.normalize_advantages and shard is None:
        advantages = normalize_advantages(advantages, torch.ones_like(advantages))
    elif config.normalize_advantages:  # the whole batch's moments (trials have equal lengths)
        center = mean(advantages.mean(), local)
        advantages = (advantages - center) / torch.sqrt(mean(((advantages - center) ** 2).mean(), local) + 1e-8)
    mb = num // config.num_minibatches
    stats: dict[str, torch.Tensor] = {}
    steps, stop = 0, False
    for epoch in range(config.epochs):
        for i in range(config.num_minibatches):
            idx = noise.perms[epoch, i * mb:(i + 1) * mb]
            members = idx.numel()
            if shard is not None:  # this process's members of the minibatch, as local indices
                mine = (idx >= shard.start) & ((idx - shard.start) % shard.step == 0)
                idx = (idx[mine] - shard.start) // shard.step
                members = idx.numel()
                if members == 0:  # none here: a stand-in trial with weight 0 keeps the collectives in step
                    idx = torch.zeros(1, dtype=idx.dtype, device=idx.device)
            grads, (loss, aux) = grad_fn(params, _minibatch(trial, idx), advantages[:, idx], returns[:, idx], policy,
                                         clip_eps=config.clip_eps, value_coef=config.value_coef,
                                         entropy_coef=config.entropy_coef)
            if shard is not None:
                grads = tree_map(lambda g: mean(g, members), grads)
                loss, aux = mean(loss, members), {k: mean(v, members) for k, v in aux.items()}
            norm = tree_norm(grads)  # before any clipping the optimizer composes
            stats = {"loss": loss.detach(), **aux, "grad_norm": norm.detach()}
            if config.target_kl is not None and bool(aux["kl"] > config.target_kl):
                stop = True  # the policy moved too far: neither this minibatch nor the rest
                break
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = apply_updates(params, updates)
            steps += 1
        if stop:
            break
    if config.target_kl is not None:
        stats["updates"] = torch.tensor(float(steps))
    stats["trial_return"] = mean(trial.rewards.sum(0).mean(), local)
    return params, opt_state, stats
