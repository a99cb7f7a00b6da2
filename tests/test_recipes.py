"""The recipes in ``recipes/``: what they run composes and passes the app's checks.

Commands are collected the way the shell would run them: each script, and each command line of
each README's ``bash`` blocks, runs under bash with fake ``lrsched``, ``srun``, ``torchrun``,
``python`` and ``nvidia-smi`` first on ``PATH``, which only record their arguments. Bash itself
expands the variables (SLURM's, ``MASTER_ADDR``, ...), set here to values this machine can check
(one CPU device per process), so what :func:`precheck` sees is what the script would launch.
(``lrsched compare`` itself: tests/test_compare.py; on a real sweep's runs: test_sweeps.py.)
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightning_lrsched.app.precheck import precheck
from lightning_lrsched.app.schemas import register_configs
from lightning_lrsched.app.train import CONFIG_PATH

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
RECIPE_DIRS = sorted(p for p in RECIPES.iterdir() if p.is_dir())
SCRIPTS = sorted([*RECIPES.glob("*/*.sh"), *RECIPES.glob("*/*.sbatch")])
READMES = sorted(RECIPES.glob("*/README.md"))
FAKES = ("lrsched", "srun", "torchrun", "python", "nvidia-smi")
LAUNCHERS = ("lrsched", "srun", "torchrun", "python", "bash")
# What the scripts read from their environment, as a SLURM allocation or two machines would set
# it, shrunk to what passes the checks here (one CPU device per process).
SCRIPT_ENV = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "lrsched",
    "SLURM_NNODES": "2",
    "SLURM_GPUS_ON_NODE": "1",
    "SLURM_CPUS_PER_TASK": "1",
    "MASTER_ADDR": "node-a",
    "NPROC_PER_NODE": "1",
    "ACCELERATOR": "cpu",
}
SBATCH_KEYS = (
    "nodes", "ntasks-per-node", "gpus-per-node", "cpus-per-task", "time", "requeue", "signal",
)  # fmt: skip


def rel(path: Path) -> str:
    return str(path.relative_to(RECIPES))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_cache: Path) -> Iterator[None]:
    """Each test in its own cwd and MLflow store."""
    register_configs()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    yield


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """A directory of recording stand-ins; each appends its argv as a JSON line to calls.jsonl."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name in FAKES:
        path = bin_dir / name
        path.write_text(
            f"#!{sys.executable}\nimport json, os, sys\n"
            "with open(os.environ['RECIPE_CALLS'], 'a') as f:\n"
            "    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n"
        )
        path.chmod(0o755)
    return bin_dir


def run_bash(
    args: list[str], fakes: Path, cwd: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run bash with the fakes first on PATH; the result and every recorded call."""
    calls = cwd / "calls.jsonl"
    calls.unlink(missing_ok=True)
    environ = {**os.environ, **SCRIPT_ENV, "SLURM_SUBMIT_DIR": str(cwd), **env}
    environ["PATH"] = f"{fakes}{os.pathsep}{environ['PATH']}"
    environ["RECIPE_CALLS"] = str(calls)
    done = subprocess.run(
        ["bash", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60
    )
    recorded = (
        [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    )
    return done, recorded


def train_overrides(call: list[str]) -> list[str] | None:
    """The overrides of a call that runs ``lrsched train`` or ``lrsched find-lr`` (the same
    config; directly, under srun, or as the module under torchrun or python); None for other
    calls."""
    commands = (
        ("lrsched", "train"), ("-m", "lightning_lrsched.app.train"),
        ("lrsched", "find-lr"), ("-m", "lightning_lrsched.app.find_lr"),
    )  # fmt: skip
    for i in range(len(call) - 1):
        if (call[i], call[i + 1]) in commands:
            return call[i + 2 :]
    return None


def checked(overrides: list[str]) -> None:
    problem = precheck(CONFIG_PATH, overrides)
    assert problem is None, f"{shlex.join(overrides)}: {problem}"


def readme_commands(readme: Path) -> list[str]:
    """The command lines of the README's ``bash`` blocks that launch something, ready for
    ``bash -c`` (continuation lines joined, comments dropped). ``sbatch [options] .../x.sbatch``
    and ``bash .../x.sh`` run this recipe's own script of that name with ``bash``."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = line.split(" #")[0].split()
            assignments = list(itertools.takewhile(lambda w: re.match(r"^\w+=", w), words))
            rest = words[len(assignments) :]
            if rest and rest[0] in ("sbatch", "bash"):
                at = next(i for i, w in enumerate(rest) if w.endswith((".sh", ".sbatch")))
                script = readme.parent / Path(rest[at]).name
                rest = ["bash", str(script), *rest[at + 1 :]]
            if rest and rest[0] in LAUNCHERS:
                commands.append(" ".join(assignments + rest))
    return commands


README_COMMANDS = [(readme, cmd) for readme in READMES for cmd in readme_commands(readme)]


# -- the files --------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPE_DIRS, ids=lambda p: p.name)
def test_every_recipe_has_a_readme_and_a_script(recipe: Path) -> None:
    assert (recipe / "README.md").is_file()
    scripts = [*recipe.glob("*.sh"), *recipe.glob("*.sbatch"), *recipe.glob("*.py")]
    assert scripts, f"{recipe.name} has nothing to run"


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_shell_scripts_parse(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- what they launch passes the checks -----------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_script_launches_commands_that_pass_precheck(
    script: Path, fakes: Path, tmp_path: Path
) -> None:
    done, calls = run_bash([str(script), "trainer.max_epochs=2"], fakes, tmp_path)
    assert done.returncode == 0, done.stderr
    launched = [o for o in map(train_overrides, calls) if o is not None]
    assert launched, f"{rel(script)} launched no training: {calls}"
    for overrides in launched:
        assert overrides[-1] == "trainer.max_epochs=2", "extra arguments go last, as overrides"
        checked(overrides)


@pytest.mark.parametrize(
    ("readme", "command"),
    README_COMMANDS,
    ids=[f"{rel(r)}:{c.replace(f'{RECIPES}/', '')[:60]}" for r, c in README_COMMANDS],
)
def test_readme_commands_pass_precheck(
    readme: Path, command: str, fakes: Path, tmp_path: Path
) -> None:
    done, calls = run_bash(["-c", command], fakes, tmp_path)
    assert done.returncode == 0, done.stderr
    launched = [o for o in map(train_overrides, calls) if o is not None]
    if "lrsched compare" not in command:  # reads a store: tests/test_compare.py
        assert launched, f"{command}: launched no training: {calls}"
    for overrides in launched:
        checked(overrides)


def test_every_readme_shows_a_command_or_its_script() -> None:
    for readme in READMES:
        text = readme.read_text()
        scripts = [p.name for p in readme.parent.iterdir() if p.suffix in (".sh", ".sbatch")]
        assert readme_commands(readme) or any(name in text for name in scripts), readme


# -- SLURM: directives, requeue, resume ---------------------------------------------------------


def sbatch_directives(script: Path) -> dict[str, str]:
    found = re.findall(r"^#SBATCH\s+--([\w-]+)(?:=(\S+))?", script.read_text(), flags=re.M)
    return {key: value for key, value in found}


def test_slurm_script_asks_for_the_allocation_and_the_warning_signal() -> None:
    directives = sbatch_directives(RECIPES / "slurm" / "train.sbatch")
    assert set(SBATCH_KEYS) <= set(directives), directives
    assert directives["signal"] == "SIGUSR1@90"
    assert directives["ntasks-per-node"] == directives["gpus-per-node"], "one task per GPU"


def test_slurm_script_resumes_by_itself_from_the_newest_checkpoint(
    fakes: Path, tmp_path: Path
) -> None:
    """The same command for every start of the job: ``ckpt_path=auto`` in the job's directory,
    which names the newest checkpoint of ``checkpoints/`` (the run itself: tests/test_launch.py)."""
    from lightning_lrsched.app.run import resume_from

    done, calls = run_bash([str(RECIPES / "slurm" / "train.sbatch")], fakes, tmp_path)
    assert done.returncode == 0, done.stderr
    [srun] = [c for c in calls if c[0] == "srun"]
    overrides = train_overrides(srun)
    assert overrides is not None
    run_dir = tmp_path / "runs" / SCRIPT_ENV["SLURM_JOB_ID"]
    assert "ckpt_path=auto" in overrides
    assert f"trainer.default_root_dir={run_dir}" in overrides
    assert f"hydra.run.dir={run_dir}/hydra" in overrides  # one output directory for all tasks
    assert "trainer.devices=1" in overrides and "trainer.num_nodes=2" in overrides
    checked(overrides)

    assert resume_from(str(run_dir)) is None  # the first start
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"end of an epoch")
    time.sleep(0.02)
    (run_dir / "checkpoints" / "preempted.ckpt").write_bytes(b"written on SIGUSR1")
    assert resume_from(str(run_dir)) == str(run_dir / "checkpoints" / "preempted.ckpt")
    time.sleep(0.02)
    os.utime(run_dir / "checkpoints" / "last.ckpt")  # an epoch ended after the restart
    assert resume_from(str(run_dir)) == str(run_dir / "checkpoints" / "last.ckpt")


# -- torchrun ------------------------------------------------------------------------------------


def test_torchrun_script_rendezvous_and_overrides(fakes: Path, tmp_path: Path) -> None:
    script = str(RECIPES / "torchrun_two_nodes" / "train.sh")
    done, calls = run_bash([script], fakes, tmp_path)
    assert done.returncode == 0, done.stderr
    [call] = [c for c in calls if c[0] == "torchrun"]
    options = call[1 : call.index("-m")]
    for expected in (
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=node-a:29500",
    ):
        assert expected in options, options
    overrides = train_overrides(call)
    assert overrides is not None
    assert {"trainer=ddp", "trainer.num_nodes=2", "trainer.devices=1"} <= set(overrides)
    checked(overrides)


@pytest.mark.parametrize(
    ("unset", "message"),
    [("MASTER_ADDR", "set MASTER_ADDR"), ("NPROC_PER_NODE", "no GPU found")],
)
def test_torchrun_script_refuses_without_its_settings(
    unset: str, message: str, fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(SCRIPT_ENV, unset)
    monkeypatch.delenv(unset, raising=False)
    script = str(RECIPES / "torchrun_two_nodes" / "train.sh")
    done, calls = run_bash([script], fakes, tmp_path)
    assert done.returncode != 0 and message in done.stderr
    assert not [c for c in calls if c[0] == "torchrun"]
