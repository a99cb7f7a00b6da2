"""The ``lrsched`` command line (``list``, ``plot``) and :func:`plan_rates`.

A few tests run the real command as a subprocess (``python -m lightning_lrsched``); the rest
call :func:`main` in-process, which is the same code without the interpreter start-up.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_lrsched import STRATEGIES
from lightning_lrsched.app.cli import draw, main, parse_value
from lightning_lrsched.preview import plan_rates

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "lightning_lrsched", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_png(path: Path, min_size: int = 200) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, channels = matplotlib.image.imread(path).shape
    assert height >= min_size and width >= min_size and channels in (3, 4)


# -- as a real process ------------------------------------------------------------------------


def test_list_names_every_strategy(tmp_path: Path) -> None:
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(STRATEGIES) <= listed
    for name, strategy in STRATEGIES.items():
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert strategy.reference in line, name
        for parameter in strategy.params():
            assert parameter in line, (name, parameter)
    for common in (
        *("warmup", "warmup_start_factor", "warmup_type", "2ep", "5%"),
        *("noise_range", "noise_pct", "noise_std", "noise_seed", "noise_type"),
        "scale_schedule_ratio",
    ):
        assert common in result.stdout


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "c.png"
    argv = ["plot", "cosine", "warmup=10%", "--total-steps", "100", "--out", str(out)]
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert_png(out)


@pytest.mark.parametrize(
    "argv",
    [
        ["sequence", "phases=[{name:linear,start_factor:0.1,end_factor:1.0,duration:10},"
         "{name:cosine}]"],
        ["chain", "schedules=[{name:linear,start_factor:0.1,end_factor:1.0,total_iters:10},"
         "{name:cosine}]"],
    ],
    ids=["sequence", "chain"],
)  # fmt: skip
def test_plot_reads_values_as_train_does(argv: list[str], tmp_path: Path) -> None:
    """The issue's commands: the value is Hydra's override grammar, as for ``lrsched train``."""
    out = tmp_path / "p.png"
    assert main(["plot", *argv, "--total-steps", "100", "--out", str(out)]) == 0
    assert_png(out)


def test_bad_parameter_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("plot", "cosine", "eta_mn=0.1", "--total-steps", "100", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lrsched: error: scheduler.eta_mn=0.1: unknown parameter")
    assert "eta_min" in lines[0]  # what is allowed
    assert not (tmp_path / "schedule.png").exists()


# -- in-process -------------------------------------------------------------------------------


def test_onecycle_plot_draws_momentum(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o.png"
    assert main(["plot", "onecycle", "max_lr=1.0", "--total-steps", "200", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert_png(out)
    plan = plan_rates({"name": "onecycle", "max_lr": 1.0}, 200)
    fig = draw(plan, title="onecycle")
    assert [ax.get_ylabel() for ax in fig.axes] == ["learning rate", "momentum"]
    adamw = plan_rates({"name": "onecycle"}, 200, optimizer="adamw")
    assert [ax.get_ylabel() for ax in draw(adamw, title="").axes] == ["learning rate", "beta1"]
    assert len(draw(plan_rates({"name": "cosine"}, 200), title="cosine").axes) == 1


def test_multistep_in_epochs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.png"
    argv = ["plot", "multistep", "milestones=[2ep,4ep]", "--total-steps", "600"]
    assert main([*argv, "--steps-per-epoch", "100", "--out", str(out)]) == 0
    assert_png(out)
    plan = plan_rates({"name": "multistep", "milestones": ["2ep", "4ep"]}, 600, steps_per_epoch=100)
    assert plan.lrs[199] == pytest.approx(0.1) and plan.lrs[200] == pytest.approx(0.01)
    assert plan.lrs[399] == pytest.approx(0.01) and plan.lrs[400] == pytest.approx(0.001)
    (ax,) = draw(plan, title="multistep", steps_per_epoch=100).axes
    epoch_lines = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in epoch_lines) == [100, 200, 300, 400, 500]


def test_overrides_may_follow_options(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    argv = ["plot", "step", "--total-steps", "50", "step_size=10", "gamma=0.5", "--out", str(out)]
    assert main(argv) == 0
    assert_png(out)


def test_list_one_strategy_documents_each_parameter(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "cyclic"]) == 0
    out = capsys.readouterr().out
    assert "step_size_up          duration, default 2000: steps from bottom to top" in out
    assert "max_lr                per_group, required" in out
    assert main(["list", "cosine_restarts"]) == 0
    out = capsys.readouterr().out
    for line in (
        "cycle_decay           number, default 1.0: each restart's peak",
        "cycle_limit           integer, default 0: eta_min after this many cycles (0: no limit)",
        "k_decay               number, default 1.0: timm's k-decay",
        "noise_range           duration, default null: noise on the rate from this step on",
        "noise_type            normal|uniform, default normal",
        "scale_schedule_ratio  number, default 1.0: multiplies every duration",
    ):
        assert line in out, line
    assert main(["list", "cosin"]) == 2
    assert "unknown strategy" in capsys.readouterr().err


def test_the_figure_is_the_plan() -> None:
    """What is drawn is the planned curve: x = steps (and the end), y = rates, held per step."""
    plan = plan_rates({"name": "onecycle", "max_lr": 1.0}, 50)
    rate_axes, momentum_axes = draw(plan, title="onecycle", steps_per_epoch=10).axes[:2]
    (rate_line,) = [line for line in rate_axes.lines if line.get_linestyle() != ":"]
    assert list(rate_line.get_xdata()) == [*range(50), 50]
    assert list(rate_line.get_ydata()) == [*plan.lrs, plan.lrs[-1]]
    assert rate_line.get_drawstyle() == "steps-post"
    (momentum_line,) = [line for line in momentum_axes.lines if line.get_linestyle() != ":"]
    assert list(momentum_line.get_ydata()) == [*plan.momenta, plan.momenta[-1]]


def test_plots_of_different_schedules_differ(tmp_path: Path) -> None:
    """The PNG depends on the schedule drawn (not a blank or fixed image)."""
    import matplotlib.image

    images = []
    for name, extra in (("cosine", []), ("step", ["step_size=10"])):
        out = tmp_path / f"{name}.png"
        assert main(["plot", name, *extra, "--total-steps", "50", "--out", str(out)]) == 0
        images.append(matplotlib.image.imread(out))
    assert images[0].shape == images[1].shape
    assert images[0].std() > 0 and abs(images[0] - images[1]).max() > 0.5


def test_help_exits_0(capsys: pytest.CaptureFixture) -> None:
    assert main(["plot", "--help"]) == 0
    assert "--steps-per-epoch" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["plot", "nosuch", "--total-steps", "10"], "scheduler.name='nosuch'"),
        (["plot", "cosine", "warmup=200%", "--total-steps", "10"], "scheduler.warmup"),
        (["plot", "cosine", "warmup=10", "--total-steps", "10"], "scheduler.warmup=10"),
        (["plot", "step", "step_size=2", "gamma=-1", "--total-steps", "10"], "scheduler.gamma"),
        (["plot", "multistep", "milestones=[2ep,4ep]", "--total-steps", "10"], "--steps-per-epoch"),
        (["plot", "multistep", "milestones=[2ep,4ep", "--total-steps", "10"], "'[2ep,4ep'"),
        (["plot", "cosine", "warmup", "--total-steps", "10"], "'warmup'"),
        (["plot", "cosine", "warmup=1", "warmup=2", "--total-steps", "10"], "warmup"),
        (["plot", "cosine", "warmup=1,2", "--total-steps", "10"], "not a sweep"),
        (
            [
                "plot",
                "sequence",
                "phases=[{name:linear,duration:10,foo:1},{name:cosine}]",
                "--total-steps",
                "100",
            ],
            "scheduler.phases[0].foo=1: unknown parameter",
        ),
        (["plot", "cosine", "--total-steps", "0"], "total_steps=0"),
        (["plot", "cosine", "--total-steps", "10", "--lr", "nan"], "lr=nan"),
        (["plot", "cosine", "--total-steps", "10", "--optimizer", "adam"], "--optimizer"),
        (["plot", "cosine"], "--total-steps"),
        (["plot", "cosine", "--total-steps", "10", "--bogus"], "--bogus"),
        (["frob"], "frob"),
        ([], "command"),
    ],
)
def test_bad_input(argv: list[str], named: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("lrsched: error: ")
    assert named in line


def test_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "missing" / "x.png"
    assert main(["plot", "constant", "--total-steps", "5", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "--out" in line


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5%", "5%"),
        ("2ep", "2ep"),
        ("1e-4", 1e-4),
        ("-3.5E2", -350.0),
        ("7", 7),
        ("010", "010"),
        ("true", True),
        ("False", False),
        ("on", "on"),
        ("null", None),
        ("val_loss", "val_loss"),
        ("", ""),
        ("[30ep,60ep]", ["30ep", "60ep"]),
        ("[0.9, 1e-3]", [0.9, 1e-3]),
        (
            "[{name: linear, duration: 10}, {name: cosine, eta_min: 1e-5}]",
            [{"name": "linear", "duration": 10}, {"name": "cosine", "eta_min": 1e-5}],
        ),
        # Hydra's grammar needs no space after the colon (YAML read "name:linear" as one key)
        (
            "[{name:linear,start_factor:0.1,duration:10},{name:cosine}]",
            [{"name": "linear", "start_factor": 0.1, "duration": 10}, {"name": "cosine"}],
        ),
        ("'quoted, with a comma'", "quoted, with a comma"),
    ],
)
def test_values_parse_like_hydra(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_inf_parses_as_float() -> None:
    assert parse_value("inf") == math.inf and math.isnan(parse_value("nan"))


# -- plan_rates -------------------------------------------------------------------------------


def _hf_cosine(opt):
    from transformers.optimization import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(opt, 10, 100)


def _sequential(opt):
    linear = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=10)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=90)
    return torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[10])


tls = torch.optim.lr_scheduler
PLAN_CONFIGS = [
    ({"name": "cosine", "warmup": "10%"}, "sgd", None, _hf_cosine),
    (
        {"name": "multistep", "milestones": ["1ep", 70], "gamma": 0.5},
        "sgd",
        20,
        lambda o: tls.MultiStepLR(o, milestones=[20, 70], gamma=0.5),
    ),
    (
        {"name": "onecycle", "max_lr": 0.5},
        "sgd",
        None,
        lambda o: tls.OneCycleLR(o, max_lr=0.5, total_steps=100),
    ),
    (
        {"name": "onecycle", "max_lr": 0.5, "three_phase": True},
        "adamw",
        None,
        lambda o: tls.OneCycleLR(o, max_lr=0.5, total_steps=100, three_phase=True),
    ),
    (
        {"name": "cyclic", "max_lr": 0.4, "step_size_up": 7},
        "sgd",
        None,
        lambda o: tls.CyclicLR(o, base_lr=0.1, max_lr=0.4, step_size_up=7),
    ),
    (
        {"name": "sequence", "phases": [{"name": "linear", "duration": 10}, {"name": "cosine"}]},
        "adamw",
        None,
        _sequential,
    ),
]


@pytest.mark.parametrize(("config", "optimizer", "steps_per_epoch", "reference"), PLAN_CONFIGS)
def test_plan_is_the_reference_trajectory(config, optimizer, steps_per_epoch, reference) -> None:
    """The plan equals the torch / Hugging Face scheduler it mirrors, step by step (rates and,
    where cycled, momentum), driven on the same one-parameter optimizer the plan uses."""
    total = 100
    plan = plan_rates(config, total, steps_per_epoch=steps_per_epoch, optimizer=optimizer)
    params = [torch.zeros(1, requires_grad=True)]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=0.1, betas=(0.9, 0.999))
    else:
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    ref = reference(opt)
    lrs, momenta = [], []
    for _ in range(total):
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["betas"][0] if optimizer == "adamw" else group["momentum"])
        opt.step()
        ref.step()
    assert plan.steps == tuple(range(total))
    assert plan.lrs == pytest.approx(lrs, rel=1e-9, abs=1e-15)
    if plan.momenta is not None:
        assert plan.momenta == pytest.approx(momenta, rel=1e-9)
    else:
        assert set(momenta) == {0.9}  # left alone


def test_plan_matches_torch_onecycle() -> None:
    total = 120
    plan = plan_rates({"name": "onecycle", "max_lr": 1.0}, total)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total)
    for step in range(total):
        assert plan.lrs[step] == pytest.approx(ref.get_last_lr()[0], rel=1e-9, abs=1e-15)
        assert plan.momenta[step] == pytest.approx(opt.param_groups[0]["momentum"], rel=1e-9)
        opt.step()
        ref.step()


def test_plateau_plan_is_warmup_then_base_rate() -> None:
    plan = plan_rates({"name": "plateau", "warmup": 4}, 10, base_lr=0.2)
    assert plan.lrs == pytest.approx([0.0, 0.05, 0.1, 0.15] + [0.2] * 6)
    assert plan.momenta is None and plan.name == "plateau"
