"""Structured configs and packaged options: consistent with the builders, usable from any app."""

import dataclasses
import subprocess
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf

from lightning_lrsched import build_scheduler
from lightning_lrsched.app.schemas.schedulers import SCHEDULER_SCHEMAS

# values for the parameters a schema leaves required
REQUIRED = {
    "step": {"step_size": 7},
    "multistep": {"milestones": [20, 50]},
    "exponential": {"gamma": 0.97},
    "cyclic": {"max_lr": 0.5},
    "sequence": {"phases": [{"name": "constant", "duration": 10}, {"name": "cosine"}]},
    "chain": {"schedules": [{"name": "exponential", "gamma": 0.99}]},
}


def optimizer():
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)


@pytest.mark.parametrize("name", sorted(SCHEDULER_SCHEMAS))
def test_schema_defaults_are_the_builders_defaults(name):
    """A config filled in from the schema resolves to the same plan as the bare strategy."""
    required = REQUIRED.get(name, {})
    schema = OmegaConf.structured(SCHEDULER_SCHEMAS[name])
    from_schema = OmegaConf.to_container(OmegaConf.merge(schema, required))
    bare = {"name": name, **required}
    a = build_scheduler(optimizer(), from_schema, total_steps=100, steps_per_epoch=10)
    b = build_scheduler(optimizer(), bare, total_steps=100, steps_per_epoch=10)
    assert a.description == b.description


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
