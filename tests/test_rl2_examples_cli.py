"""The RL² examples' command line (issue 26): flags derived by tyro from ``runners.RL2Config``.

Every ``python examples/rl2_*.py ...`` command the docs record must keep its meaning. The
reference is ``data/rl2_examples_cli_expected.json``: what the hand-written argparse parsers made
of those commands (and of the long issue-28 run's) before the flags moved to tyro, written by
``data/make_rl2_examples_cli_expected.py`` from the old examples.
"""

import importlib
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {row["command"]: row for row in json.loads((ROOT / "tests" / "data" / "rl2_examples_cli_expected.json").read_text())}
COMMAND = re.compile(r"python examples/(rl2_(?:bandits|mdp))\.py((?:[^`\n])*)")
# The long RL² bandit run of issue 28 (started 02:09 UTC): it is resumed with exactly this command line.
LONG_RUN = ("python examples/rl2_bandits.py --k 10 --n 100 --iterations 3000 --trials 512 --hidden 128 --minibatches 4 "
            "--epochs 4 --lr 2e-3 --gamma 0.99 --gae-lambda 0.95 --reward-scale 0.1 --entropy-coef 0.05 "
            "--entropy-coef-final 0.005 --entropy-decay-iterations 600 --value-network separate --cell-init orthogonal "
            "--update-gate-bias 1.0 --target-kl 0.02 --threads 1 --seed 0 --max-minutes 60 --no-progress "
            "--output /work/refruns/rl2_k10_n100_i28_s0 --resume")


def _doc_commands() -> list[str]:
    found = []
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for match in COMMAND.finditer(path.read_text()):
            found.append(f"python examples/{match.group(1)}.py{match.group(2)}".strip())
    return found


DOC_COMMANDS = _doc_commands()


@pytest.fixture
def examples(monkeypatch):
    """The two example modules, imported by name from examples/ (rl2_mdp.py imports rl2_bandits;
    importing registers both in sys.modules, where tyro and dataclasses look them up)."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    return {name: importlib.import_module(name) for name in ("rl2_bandits", "rl2_mdp")}


def _parse(examples, command: str):
    words = shlex.split(command)
    assert words[0] == "python" and words[1].startswith("examples/rl2_"), command
    module = examples[Path(words[1]).stem]
    return module.parse_args(module.Args, module.DEFAULTS, words[2:], prog=Path(words[1]).name, description=None)


def _typed(tree):
    """Values with their types (1 and 1.0 differ; lists and tuples alike)."""
    if isinstance(tree, dict):
        return {k: _typed(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_typed(v) for v in tree]
    return (type(tree).__name__, tree)


def test_the_reference_covers_the_docs_and_the_long_run():
    assert len(DOC_COMMANDS) >= 20  # the extraction finds the recorded commands
    assert LONG_RUN in EXPECTED
    # the commands the docs held when the reference was captured are all in it
    assert sum(c in EXPECTED for c in DOC_COMMANDS) >= 20


@pytest.mark.parametrize("command", sorted(set(DOC_COMMANDS) | set(EXPECTED)))
def test_recorded_commands_parse_as_before(examples, command):
    args = _parse(examples, command)
    config = args.config
    assert type(config).__name__ == "RL2Config"
    assert config.env == ("bandit" if "rl2_bandits" in command else "mdp")
    if command not in EXPECTED:  # a command added to the docs after the reference was captured
        return
    expected = EXPECTED[command]
    assert _typed(config.to_dict()) == _typed(expected["config"])
    example = {name: getattr(args, name) for name in expected["example"]}
    assert _typed(example) == _typed(expected["example"])


def test_long_run_command_keeps_its_settings(examples):
    args = _parse(examples, LONG_RUN)
    config = args.config
    assert (config.num_arms, config.num_pulls, config.iterations, config.trials_per_iteration) == (10, 100, 3000, 512)
    assert (config.num_minibatches, config.entropy_decay_iterations, config.cell_init) == (4, 600, "orthogonal")
    assert config.update_gate_bias == 1.0 and config.target_kl == 0.02 and config.lr == 2e-3
    assert args.resume and args.no_progress and args.max_minutes == 60.0 and not args.overwrite
    assert args.output == "/work/refruns/rl2_k10_n100_i28_s0"


def test_old_flag_names_and_config_field_names_are_the_same_flag(examples):
    short = _parse(examples, "python examples/rl2_bandits.py --k 3 --n 7 --trials 12 --minibatches 3")
    long = _parse(examples, "python examples/rl2_bandits.py --num-arms 3 --num-pulls 7 --trials-per-iteration 12 "
                            "--num-minibatches 3")
    assert short.config == long.config
    assert (short.num_arms, short.num_pulls, short.trials_per_iteration, short.num_minibatches) == (3, 7, 12, 3)
    mdp = _parse(examples, "python examples/rl2_mdp.py --num-episodes 4 --clip-eps 0.1 --checkpoint-every 5")
    assert (mdp.config.num_episodes, mdp.config.clip_eps, mdp.config.checkpoint_every) == (4, 0.1, 5)
    # the scripts' own defaults where they are not RL2Config's
    assert (_parse(examples, "python examples/rl2_mdp.py").config.hidden,
            _parse(examples, "python examples/rl2_bandits.py").config.hidden) == (128, 256)


@pytest.mark.parametrize("script, argv, flag, detail", [
    ("rl2_bandits", ["--k", "0"], "--k/--num-arms", "num_arms must be an int in [1, inf), got 0"),
    ("rl2_bandits", ["--k", "1"], "--k/--num-arms", "num_arms must be an int in [2, inf), got 1"),
    ("rl2_bandits", ["--trials", "-1"], "--trials/--trials-per-iteration", "got -1"),
    ("rl2_bandits", ["--trials", "8", "--minibatches", "3"], "--minibatches/--num-minibatches", "must divide"),
    ("rl2_bandits", ["--value-network", "big"], "--value-network", "'separate'"),
    ("rl2_bandits", ["--entropy-coef-final", "0.1"], "--entropy-coef-final", "go together"),
    ("rl2_bandits", ["--eval-tasks", "1"], "--eval-tasks", "[2, inf), got 1"),
    ("rl2_bandits", ["--max-minutes", "0"], "--max-minutes", "got 0.0"),
    ("rl2_bandits", ["--maml-hidden", "32", "0"], "--maml-hidden", "got 0"),
    ("rl2_bandits", ["--maml-iterations", "-2"], "--maml-iterations", "got -2"),
    ("rl2_bandits", ["--threads", "0"], "--threads", "got 0"),
    ("rl2_bandits", ["--k", "ten"], "--k", "ten"),
    ("rl2_bandits", ["--trails", "8"], "--trails", "Unrecognized"),
    ("rl2_mdp", ["--n", "0"], "--n/--num-episodes", "num_episodes must be an int in [1, inf), got 0"),
    ("rl2_mdp", ["--k", "5"], "--k", "Unrecognized"),  # arms are a bandit setting
])
def test_bad_flags_are_usage_errors_naming_the_flag(examples, capsys, script, argv, flag, detail):
    module = examples[script]
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(module.Args, module.DEFAULTS, argv, prog=f"{script}.py", description=None)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    message = " ".join((captured.out + captured.err).replace("│", " ").split())  # tyro's box, unwrapped
    assert flag in message and detail in message, message


def test_help_lists_the_config_fields_and_the_old_names(examples, capsys):
    with pytest.raises(SystemExit) as exit_info:
        examples["rl2_bandits"].main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--k", "--num-arms", "--trials", "--trials-per-iteration", "--minibatches", "--gae-lambda",
                 "--value-network", "--clip-eps", "--max-grad-norm", "--maml-hidden", "--overwrite", "--resume"):
        assert flag in text, flag
    assert "--env" not in text and "--num-episodes" not in text  # fixed by the script / an MDP setting


def test_bandit_example_end_to_end(examples, tmp_path, capsys):
    """A tiny run: trains, resumes with the same flags, and refuses an --output of other settings."""
    out = tmp_path / "run"
    flags = ["--k", "3", "--n", "4", "--iterations", "2", "--trials", "8", "--hidden", "8", "--minibatches", "2",
             "--eval-tasks", "20", "--device", "cpu", "--no-progress", "--output", str(out)]
    examples["rl2_bandits"].main(flags)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["config"]["num_arms"] == 3
    assert metrics["config"]["trials_per_iteration"] == 8 and metrics["eval"]["rl2/num_tasks"] == 20
    examples["rl2_bandits"].main([*flags[:5], "3", *flags[6:], "--resume"])  # one more iteration
    assert "resumed at iteration 2" in capsys.readouterr().out
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 3
    with pytest.raises(SystemExit) as exit_info:  # other settings over the same directory
        examples["rl2_bandits"].main([*flags, "--lr", "0.01"])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    examples["rl2_bandits"].main([*flags, "--lr", "0.01", "--overwrite"])
    assert json.loads((out / "metrics.json").read_text())["config"]["lr"] == 0.01
