"""Record params after a short run with the pre-change code (reference for tests)."""
import torch
from functional_metarl.runners import RainbowConfig, RainbowTrainer
torch.set_num_threads(1)
CASES = {
    "full": dict(iterations=300, learning_starts=100, batch_size=16, buffer_size=500, hidden=(16,), head_hidden=16,
                 num_atoms=11, target_update=50, seed=3),
    "full_2envs": dict(iterations=150, num_envs=2, learning_starts=100, batch_size=16, buffer_size=500, hidden=(16,),
                       head_hidden=16, num_atoms=11, target_update=50, train_every=2, seed=4),
    "dqn": dict(iterations=400, learning_starts=100, batch_size=16, buffer_size=500, hidden=(12, 8), head_hidden=8,
                distributional=False, noisy=False, dueling=False, prioritized=False, double=False, n_step=1,
                train_every=10, target_update=50, eps_decay_steps=200, lr=2.5e-4, seed=5, max_grad_norm=None),
}
out = {}
for name, kw in CASES.items():
    t = RainbowTrainer(RainbowConfig(**kw))
    t.train(progress=False)
    out[name] = {"params": {k: v.detach().clone() for k, v in t.params.items()}, "updates": t.updates,
                 "returns": list(t.recent_returns)}
    print(name, t.updates, t.step, sum(float(v.double().sum()) for v in t.params.values()))
    t.close()
torch.save(out, "tests/data/rainbow_reference_params.pt")
