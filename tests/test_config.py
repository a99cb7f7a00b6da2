"""Structured configs and packaged options: consistent with the builders, usable from any app."""

import dataclasses
import subprocess
import sys
import textwrap

import pytest
from omegaconf import OmegaConf
from optimizers import make_optimizer

from lightning_lrsched import STRATEGIES, build_scheduler
from lightning_lrsched.app.schemas.schedulers import SCHEDULER_SCHEMAS


def examples(name):
    """The declared example values (what the packaged option sets, e.g. required parameters)."""
    from lightning_lrsched.spec import NO_EXAMPLE

    return {
        k: p.example for k, p in STRATEGIES[name].params().items() if p.example is not NO_EXAMPLE
    }


def optimizer():
    return make_optimizer(kind="sgd")


@pytest.mark.parametrize("name", sorted(SCHEDULER_SCHEMAS))
def test_schema_defaults_are_the_builders_defaults(name):
    """A config filled in from the schema resolves to the same plan as the bare strategy."""
    required = examples(name)
    schema = OmegaConf.structured(SCHEDULER_SCHEMAS[name])
    from_schema = OmegaConf.to_container(OmegaConf.merge(schema, required))
    bare = {"name": name, **required}
    a = build_scheduler(make_optimizer((1e-3,)), from_schema, total_steps=100, steps_per_epoch=10)
    b = build_scheduler(make_optimizer((1e-3,)), bare, total_steps=100, steps_per_epoch=10)
    assert a.description == b.description


def test_generated_option_files_and_readme_table_are_current():
    """Option files and the README's table are derived from the declarations; a declaration
    changed without running the generator fails here."""
    from lightning_lrsched.app.generate import stale_files

    assert stale_files() == [], "run: python -m lightning_lrsched.app.generate"


def _declared_option(name):
    """What composing ``scheduler=<name>`` must give: the declared defaults and examples."""
    from lightning_lrsched.registry import STRATEGIES
    from lightning_lrsched.spec import COMMON_PARAMS, NO_EXAMPLE, REQUIRED

    strategy = STRATEGIES[name]
    expected = {"name": name}
    for key, spec in {**COMMON_PARAMS, **strategy.params()}.items():
        if spec.example is not NO_EXAMPLE:
            expected[key] = spec.example
        elif spec.default is REQUIRED:
            raise AssertionError(f"{name}.{key} is required but its option file gives no example")
        elif key in COMMON_PARAMS or not strategy.open_keys:
            expected[key] = spec.default if isinstance(spec.default, int | float | str) else None
    return {**expected, **getattr(strategy, "EXAMPLE_KWARGS", {})}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_packaged_option_is_the_declaration(name):
    """``scheduler=<name>`` in the app composes to exactly the declared defaults plus the
    declared example values, and that config builds."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightning_lrsched.app.schemas import register_configs
    from lightning_lrsched.app.train import CONFIG_PATH

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose("train", overrides=[f"scheduler={name}"])
    GlobalHydra.instance().clear()
    composed = OmegaConf.to_container(cfg.scheduler, resolve=True)
    expected = _declared_option(name)
    if STRATEGIES[name].open_keys:  # no schema: only what the file writes
        expected = {k: v for k, v in expected.items() if k in composed}
    assert composed == expected
    app_optimizer = make_optimizer((1e-3,))  # the app's default rate (adamw lr=1e-3)
    build_scheduler(app_optimizer, composed, total_steps=100, steps_per_epoch=10)


def test_every_strategy_but_torch_has_a_schema():
    from lightning_lrsched import STRATEGIES

    assert set(STRATEGIES) - set(SCHEDULER_SCHEMAS) == {"torch"}
    for schema in SCHEDULER_SCHEMAS.values():
        assert {f.name for f in dataclasses.fields(schema)} >= {"name", "warmup"}


def test_schema_rejects_misspelled_keys_and_wrong_types():
    from omegaconf.errors import ConfigKeyError, ValidationError

    schema = OmegaConf.structured(SCHEDULER_SCHEMAS["step"])
    with pytest.raises(ConfigKeyError, match="gama"):
        OmegaConf.merge(schema, {"gama": 0.5})
    with pytest.raises(ValidationError):
        OmegaConf.merge(schema, {"gamma": "half"})


def test_user_app_composes_packaged_configs(tmp_path):
    """A throwaway Hydra app, with the package installed, uses lrsched/<group> options."""
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            """
            defaults:
              - lrsched/scheduler: cosine
              - lrsched/optimizer@optimizer: sgd
              - _self_
            """
        )
    )
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import json
            import hydra
            from omegaconf import OmegaConf

            @hydra.main(version_base="1.3", config_path=".", config_name="config")
            def main(cfg):
                print(json.dumps(OmegaConf.to_container(cfg, resolve=True)))

            main()
            """
        )
    )

    def run(*overrides):
        return subprocess.run(
            [sys.executable, "app.py", "hydra.run.dir=out", *overrides],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    import json

    done = run()
    assert done.returncode == 0, done.stderr
    cfg = json.loads(done.stdout.strip().splitlines()[-1])
    assert cfg["lrsched"]["scheduler"]["name"] == "cosine"
    assert cfg["optimizer"] == {
        "name": "sgd",
        "lr": 0.1,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "nesterov": False,
        "dampening": 0.0,
    }

    done = run("lrsched/scheduler=onecycle", "lrsched.scheduler.max_lr=0.3")
    assert done.returncode == 0, done.stderr
    scheduler = json.loads(done.stdout.strip().splitlines()[-1])["lrsched"]["scheduler"]
    assert (scheduler["name"], scheduler["max_lr"], scheduler["pct_start"]) == (
        "onecycle",
        0.3,
        0.3,
    )
    # ... and the composed node is a valid strategy config for build_scheduler
    build_scheduler(optimizer(), scheduler, total_steps=100)

    done = run("lrsched.scheduler.gama=3")  # the schema still guards the user's app
    assert done.returncode != 0
    assert "gama" in done.stderr


def test_a_new_declaration_reaches_every_derived_place(monkeypatch):
    """One dataclass is the whole strategy: validation, schema, option file, list and table."""
    from dataclasses import dataclass

    from lightning_lrsched import ConfigError
    from lightning_lrsched.app import generate
    from lightning_lrsched.registry import register
    from lightning_lrsched.schedules.base import ScaledSchedule
    from lightning_lrsched.spec import param

    monkeypatch.setattr("lightning_lrsched.registry.STRATEGIES", dict(STRATEGIES))
    monkeypatch.setattr(
        generate, "STRATEGIES", __import__("lightning_lrsched.registry").registry.STRATEGIES
    )

    @register
    @dataclass(frozen=True, kw_only=True)
    class Halving(ScaledSchedule):
        """Halve the rate every period steps."""

        name = "halving"
        reference = "torch StepLR(gamma=0.5)"
        period: int = param("duration", "steps between halvings", example="1ep")

        def factor(self, step: int) -> float:
            return 0.5 ** (step // self.period)

    scheduler = build_scheduler(optimizer(), {"name": "halving", "period": "10%"}, total_steps=50)
    rates = []
    for _ in range(12):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert rates == [0.1] * 5 + [0.05] * 5 + [0.025] * 2
    with pytest.raises(
        ConfigError, match=r"scheduler\.perod=5: unknown parameter \(did you mean 'period'"
    ):
        build_scheduler(optimizer(), {"name": "halving", "perod": 5})
    schema = generate.scheduler_schema(Halving)
    from lightning_lrsched.spec import COMMON_PARAMS

    # the keys every strategy takes (warmup, noise, scale_schedule_ratio) and its own
    assert {f.name for f in dataclasses.fields(schema)} == {"name", *COMMON_PARAMS, "period"}
    assert "/lrsched_schema/scheduler/halving@_here_" in generate.option_file(Halving)
    assert "period: 1ep" in generate.option_file(Halving)
    assert any(line.startswith("halving ") for line in generate.list_lines())
    assert (
        "| `halving` | Halve the rate every period steps | `period` | torch StepLR(gamma=0.5) |"
        in (generate.readme_table())
    )
