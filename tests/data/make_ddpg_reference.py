"""Record DDPG / TD3 state after short Pendulum runs with the code before the issue-27 speed work
(the eager, num_envs=1 reference that tests/test_ddpg.py holds the fast paths to).

    python tests/data/make_ddpg_reference.py    # writes tests/data/ddpg_reference_params.pt
"""
import torch
from functional_metarl.runners import DDPGConfig, DDPGTrainer

torch.set_num_threads(1)
CASES = {
    "td3": dict(algo="td3", iterations=300, start_steps=100, batch_size=16, buffer_size=500, hidden=(16, 16), seed=3),
    "ddpg_2updates": dict(algo="ddpg", iterations=300, start_steps=100, batch_size=16, buffer_size=500, hidden=(16,),
                          updates_per_step=2, seed=4),
    "lillicrap": dict(lillicrap=True, iterations=300, hidden=(16, 16), batch_size=16, learning_starts=50, seed=5),
}


def config(kw):
    kw = dict(kw, device="cpu")
    return DDPGConfig.lillicrap(**{k: v for k, v in kw.items() if k != "lillicrap"}) if kw.get("lillicrap") else DDPGConfig(**kw)


if __name__ == "__main__":
    out = {}
    for name, kw in CASES.items():
        t = DDPGTrainer(config(kw))
        t.train(progress=False)
        out[name] = {
            "actor_params": t.actor_params, "critic_params": t.critic_params,
            "target_actor_params": t.target_actor_params, "target_critic_params": t.target_critic_params,
            "critic_opt_mu": t.critic_opt_state.mu, "actor_opt_nu": t.actor_opt_state.nu,
            "critic_updates": t.critic_updates, "steps": t.steps,
            "returns": [row["return"] for row in t.history if "return" in row],
        }
        print(name, t.critic_updates, t.steps, sum(float(v.double().sum()) for v in t.actor_params.values()))
        t.close()
    torch.save(out, "tests/data/ddpg_reference_params.pt")
