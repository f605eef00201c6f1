"""Writes rl2_examples_cli_expected.json: what the RL² examples' hand-written argparse parsers
(before issue 26 derived their flags from RL2Config with tyro) made of every ``python
examples/rl2_*.py ...`` command in the docs, plus a few more (the defaults, the long issue-28 run,
the smoke test's). ``tests/test_rl2_examples_cli.py`` checks the tyro parsers against it.

Run once from the repository root against the old examples (their directory as argument), e.g.
``mkdir old && git show fe56f49:examples/rl2_bandits.py > old/rl2_bandits.py`` (the commit before
issue 26 changed them), then ``python tests/data/make_rl2_examples_cli_expected.py old``.
"""

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"python examples/(rl2_(?:bandits|mdp))\.py((?:[^`\n])*)")
EXTRA = [
    "python examples/rl2_bandits.py",
    "python examples/rl2_mdp.py",
    # the long issue-28 bandit run started 02:09 UTC, to be resumed with the same command line
    "python examples/rl2_bandits.py --k 10 --n 100 --iterations 3000 --trials 512 --hidden 128 --minibatches 4 "
    "--epochs 4 --lr 2e-3 --gamma 0.99 --gae-lambda 0.95 --reward-scale 0.1 --entropy-coef 0.05 "
    "--entropy-coef-final 0.005 --entropy-decay-iterations 600 --value-network separate --cell-init orthogonal "
    "--update-gate-bias 1.0 --target-kl 0.02 --threads 1 --seed 0 --max-minutes 60 --no-progress "
    "--output /work/refruns/rl2_k10_n100_i28_s0 --resume",
    # tests/test_rl2.py's smoke run
    "python examples/rl2_mdp.py --n 2 --iterations 2 --trials 8 --hidden 8 --minibatches 2 --eval-tasks 20 "
    "--maml-iterations 1 --maml-meta-batch 4 --entropy-coef 0.02 --entropy-coef-final 0.0 "
    "--entropy-decay-iterations 2 --output OUT --no-progress",
    "python examples/rl2_bandits.py --k 3 --n 4 --activation relu --weight-norm --device cpu --maml-hidden 16 8 "
    "--maml-inner-lr 0.25 --eval-tasks 50",
]
# the example-only flags (not RL2Config fields) and their argparse dest
EXAMPLE_ONLY = ("max_minutes", "eval_tasks", "maml_iterations", "maml_meta_batch", "maml_inner_lr", "maml_hidden",
                "threads", "output", "resume", "no_progress")


def doc_commands() -> list[str]:
    found = []
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for match in COMMAND.finditer(path.read_text()):
            found.append(f"python examples/{match.group(1)}.py{match.group(2)}".strip())
    return found


def old_parse(examples: Path, command: str) -> dict:
    sys.path.insert(0, str(examples))
    import rl2_bandits  # the old examples: rl2_mdp.py built its parser as below

    from functional_metarl.runners import RL2Config

    words = shlex.split(command)
    script, argv = Path(words[1]).stem, words[2:]
    parser = argparse.ArgumentParser()
    if script == "rl2_bandits":
        parser.add_argument("--k", type=int, default=5)
        parser.add_argument("--n", type=int, default=10)
        rl2_bandits.add_common_args(parser, iterations=1500, trials=256, hidden=256, output="runs/rl2_bandits")
        args = parser.parse_args(argv)
        config = RL2Config(env="bandit", num_arms=args.k, num_pulls=args.n, **rl2_bandits.common_config(args))
    else:
        parser.add_argument("--n", type=int, default=10)
        rl2_bandits.add_common_args(parser, iterations=150, trials=128, hidden=128, output="runs/rl2_mdp")
        args = parser.parse_args(argv)
        config = RL2Config(env="mdp", num_episodes=args.n, **rl2_bandits.common_config(args))
    example = {name: getattr(args, name) for name in EXAMPLE_ONLY}
    example["maml_hidden"] = list(example["maml_hidden"])
    return {"command": command, "config": config.to_dict(), "example": example}


if __name__ == "__main__":
    examples = Path(sys.argv[1]).resolve()
    commands = list(dict.fromkeys(doc_commands() + EXTRA))
    table = [old_parse(examples, c) for c in commands]
    out = Path(__file__).with_name("rl2_examples_cli_expected.json")
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(table)} commands -> {out}")
