#!/usr/bin/env bash
# Create a SEPARATE virtual environment holding CleanRL's single-file scripts, for
# benchmarks/agents_vs_cleanrl.py (which runs them as subprocesses of this env's python).
#
#     bash benchmarks/cleanrl_env.sh                # -> .venv-cleanrl (override with VENV=path)
#     python benchmarks/agents_vs_cleanrl.py         # finds .venv-cleanrl/bin/python by default
#
# The library never imports CleanRL, and the runtime environment (.venv) never sees it.
#
# What goes in, and why (checked on Python 3.11 with the torch 2.13 CPU wheel):
#   * torch==2.13.0 FIRST, and repeated in every later install: an unpinned torch pulls a
#     multi-GB CUDA build;
#   * cleanrl 1.2.0 (PyPI, 2023-05) with --no-deps --ignore-requires-python: it declares
#     Requires-Python <3.11 (pip finds no 1.x release for 3.11 without the flag), although its
#     scripts run on 3.11; its metadata pins wandb, moviepy, huggingface-hub, ... that the three
#     scripts benchmarked never import (wandb only with --track, the hub only with
#     --upload-model). The scripts ship inside the package as modules: `python -m cleanrl.dqn`,
#     `cleanrl.ddpg_continuous_action`, `cleanrl.td3_continuous_action`.
#   * 1.2.0 was caught mid-migration, so its scripts need two eras at once:
#       - dqn.py and ddpg_continuous_action.py use gymnasium's 0.28/0.29 vector API
#         (infos["final_observation"], the "final_info" list; gymnasium 1.x changed both) and
#         stable-baselines3 2.x's ReplayBuffer (dqn.py refuses SB3 < 2.0): gymnasium 0.29.1 and
#         stable-baselines3 2.3.2 in the env itself;
#       - td3_continuous_action.py is still on gym 0.23.1 (env.seed, 4-tuple step, a list of
#         per-env infos with "terminal_observation") and SB3 1.x's ReplayBuffer, which accepts
#         gym's spaces only (SB3 2.x raises NotImplementedError on them): gym 0.23.1 in the env
#         (with pygame, which its classic-control module imports), and stable-baselines3 1.2.0
#         (the version cleanrl 1.2.0 pins) in a side folder $VENV/gym-era that the benchmark
#         puts first on PYTHONPATH for the TD3 rows only;
#       - gym 0.23 has no MuJoCo env without mujoco_py (its -v3 envs; not installable here),
#         so $VENV/gym-era/sitecustomize.py imports benchmarks/cleanrl_gym_shim.py, which
#         registers HalfCheetah-v4 in gym 0.23 as a thin API adapter over gymnasium 0.29's
#         HalfCheetah-v4 (gymnasium 0.29 has v4, not v5; v4 and our side's v5 load the same
#         MuJoCo model, half_cheetah.xml);
#   * numpy 1.23.5: gym 0.23's seeding subclasses numpy's Generator in a way that numpy >= 1.24
#     cannot deepcopy (SyncVectorEnv fails with "_generator_ctor() takes from 0 to 1 positional
#     arguments"); with it matplotlib<3.8 and pandas<2.1 (SB3 imports them; newer releases
#     refuse numpy < 1.25);
#   * tensorboard (the scripts' SummaryWriter; the benchmark reads its event files; the 1.2.0
#     scripts parse their flags with argparse, so tyro, which later CleanRL uses, is not needed),
#     mujoco 3.x and imageio (gymnasium 0.29's MuJoCo envs import it).
# Each step reports what failed; the script exits non-zero only when dqn.py cannot run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

VENV=${VENV:-.venv-cleanrl}
PY=${PYTHON:-python3}
CLEANRL_VERSION=1.2.0
REPORT="$VENV/cleanrl_report.txt"
TORCH="torch==2.13.0"
NUMPY="numpy==1.23.5"
GYM_ERA="$VENV/gym-era"

step() { echo "== $*"; }

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    "$PY" -m venv "$VENV" || exit 1
fi
# Keep the environment out of git whatever the repository's .gitignore says.
echo '*' > "$VENV/.gitignore"
. "$VENV/bin/activate"
: > "$REPORT"
note() { echo "$*" | tee -a "$REPORT"; }
LOG="$VENV/pip-cleanrl.log"
: > "$LOG"
pipi() { python -m pip install --quiet "$@" >>"$LOG" 2>&1; }

python -m pip install --quiet --upgrade pip setuptools wheel >/dev/null 2>&1 || true

step "$TORCH (the CPU wheel) first, so nothing below can pull another torch"
pipi "$TORCH" "$NUMPY" || { note "torch 2.13.0: FAILED to install (see $LOG)"; exit 1; }
python -c "import torch" 2>/dev/null || { note "torch: installed but does not import"; exit 1; }
note "torch $(python -c 'import torch; print(torch.__version__)' 2>/dev/null): ok"

step "cleanrl $CLEANRL_VERSION with --no-deps --ignore-requires-python (its scripts, not its pinned extras)"
pipi --no-deps --ignore-requires-python "cleanrl==$CLEANRL_VERSION" \
    || { note "cleanrl $CLEANRL_VERSION: FAILED to install (see $LOG)"; exit 1; }
note "cleanrl $CLEANRL_VERSION: installed (--no-deps --ignore-requires-python)"

step "gymnasium-era dependencies (dqn.py, ddpg_continuous_action.py)"
pipi "$TORCH" "$NUMPY" "gymnasium==0.29.1" "stable-baselines3==2.3.2" "matplotlib<3.8" "pandas<2.1" tensorboard \
    || note "gymnasium-era dependencies: FAILED to install in one go (see $LOG); each is checked below"
step "MuJoCo for HalfCheetah-v4 (optional: the HalfCheetah row is skipped without it)"
pipi "$TORCH" "$NUMPY" "gymnasium==0.29.1" "mujoco>=2.3.3,<3.4" imageio \
    || note "mujoco/imageio: FAILED to install (see $LOG); the HalfCheetah row will be skipped"
step "gym-era dependencies (td3_continuous_action.py): gym 0.23.1 + pygame in the env, SB3 1.2.0 in $GYM_ERA"
pipi --no-deps "gym==0.23.1" && pipi "$NUMPY" cloudpickle gym-notices pygame \
    || note "gym 0.23.1 / pygame: FAILED to install (see $LOG); the TD3 rows will fail"
rm -rf "$GYM_ERA"
pipi --no-deps --target "$GYM_ERA" "stable-baselines3==1.2.0" \
    || note "stable-baselines3 1.2.0 into $GYM_ERA: FAILED (see $LOG); the TD3 rows will fail"
mkdir -p "$GYM_ERA"
cat > "$GYM_ERA/sitecustomize.py" <<EOF
# Written by benchmarks/cleanrl_env.sh: on PYTHONPATH for the TD3 rows only, so that gym 0.23
# knows HalfCheetah-v4 (see benchmarks/cleanrl_gym_shim.py).
import sys
sys.path.append("$ROOT/benchmarks")
try:
    import cleanrl_gym_shim  # noqa: F401
except Exception as exc:  # say so; the run then fails on the unknown env id
    print(f"cleanrl_gym_shim not loaded: {type(exc).__name__}: {exc}", file=sys.stderr)
EOF

python - <<'EOF' 2>/dev/null | tee -a "$REPORT"
import importlib, importlib.metadata
for name, dist in (("torch", "torch"), ("numpy", "numpy"), ("gymnasium", "gymnasium"),
                   ("stable_baselines3", "stable-baselines3"),
                   ("tensorboard", "tensorboard"), ("mujoco", "mujoco"), ("gym", "gym"), ("pygame", "pygame")):
    try:
        importlib.import_module(name)
        print(f"{dist} {importlib.metadata.version(dist)}: ok")
    except Exception as exc:  # report, don't hide
        print(f"{dist}: import FAILED: {type(exc).__name__}: {exc}")
EOF
if PYTHONPATH="$GYM_ERA" python -c "import stable_baselines3 as s; assert s.__version__ == '1.2.0', s.__version__" 2>/dev/null; then
    note "stable-baselines3 1.2.0 in $GYM_ERA (TD3 rows): ok"
else
    note "stable-baselines3 1.2.0 in $GYM_ERA: import FAILED"
fi

step "each script benchmarked: its module is there and its flags parse (--help)"
FAILED=0
for script in dqn ddpg_continuous_action td3_continuous_action; do
    extra=""
    [ "$script" = td3_continuous_action ] && extra="$GYM_ERA"
    if PYTHONPATH="$extra" python -W ignore -m "cleanrl.$script" --help >/dev/null 2>"$VENV/help-$script.err"; then
        note "cleanrl.$script: --help ok"
    else
        note "cleanrl.$script: --help FAILED: $(tail -n 1 "$VENV/help-$script.err")"
        [ "$script" = dqn ] && FAILED=1
    fi
done
if PYTHONPATH="$GYM_ERA" python -W ignore -c "import gym; e = gym.make('HalfCheetah-v4'); e.seed(0); e.reset(); e.step(e.action_space.sample())" >/dev/null 2>"$VENV/cheetah.err"; then
    note "HalfCheetah-v4 (gym 0.23 over gymnasium 0.29, for the TD3 HalfCheetah row): makes, resets, steps"
else
    note "HalfCheetah-v4: FAILED (the HalfCheetah row will fail): $(tail -n 1 "$VENV/cheetah.err")"
fi
echo
echo "Report written to $REPORT:"
cat "$REPORT"
exit "$FAILED"
