"""The README's gallery (``scripts/gallery.py``) is current: every registered strategy has an
image made from its present example, and the plans have not changed since the images were made.

Images are not compared (matplotlib's bytes vary): the manifest's command lines and plan
digests are recomputed, without drawing.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from lightning_lrsched.app.cli import parse_overrides
from lightning_lrsched.registry import STRATEGIES

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gallery.py"
RUN_IT = "the gallery is stale; run python scripts/gallery.py and commit docs/gallery and README.md"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gallery_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gallery = _load()


@pytest.fixture(scope="module")
def expected() -> dict:
    """The manifest the script would write now (every strategy's plan computed once)."""
    return gallery.manifest()


@pytest.fixture(scope="module")
def saved() -> dict:
    return json.loads(gallery.MANIFEST.read_text())


def test_the_gallery_is_current(expected):
    found = gallery.problems(expected=expected)
    assert not found, RUN_IT + ":\n  " + "\n  ".join(found)


def test_every_strategy_has_its_image_and_caption(saved):
    assert list(saved) == list(STRATEGIES)
    section = gallery.README.read_text().partition(gallery.BEGIN)[2].partition(gallery.END)[0]
    for entry in saved.values():
        assert (gallery.GALLERY / entry["image"]).stat().st_size > 1000
        assert f"docs/gallery/{entry['image']}" in section
        assert entry["command"].replace("|", "\\|") in section
    size = sum(p.stat().st_size for p in gallery.GALLERY.iterdir())
    assert size < 1_000_000, f"docs/gallery holds {size} bytes"


def test_the_check_finds_each_kind_of_staleness(saved, expected, tmp_path):
    """A strategy without an image, one no longer registered, a changed example, a changed
    curve, a missing PNG, an image of no strategy and an edited README section are each
    reported, naming what is stale."""
    images = tmp_path / "gallery"
    images.mkdir()
    for entry in expected.values():
        (images / entry["image"]).write_bytes(b"png")
    readme = gallery.README.read_text()
    assert gallery.problems(saved, expected, images, readme) == []

    stale = copy.deepcopy(saved)
    first, second, third = list(STRATEGIES)[:3]
    del stale[first]
    stale["retired"] = {**saved[second], "image": "retired.png"}
    stale[second]["argv"] = [*stale[second]["argv"], "warmup=1"]
    stale[third]["digest"] = "0" * 64
    (images / f"{first}.png").unlink()  # gone with the manifest entry: no PNG check for it
    (images / "retired.png").write_bytes(b"png")
    (images / expected[third]["image"]).unlink()
    edited = readme.replace(f"docs/gallery/{third}.png", "docs/gallery/other.png", 1)
    found = gallery.problems(stale, expected, images, edited)
    assert found == [
        f"{first}: a registered strategy with no image",
        "retired: in the gallery but no longer registered",
        f"{second}: its example changed ({saved[second]['command']} -> "
        f"{expected[second]['command']})",
        f"{third}: its planned curve changed since the image was made",
        f"{third}: docs/gallery/{third}.png is missing",
        "docs/gallery/retired.png: an image of no strategy",
        "README.md: the gallery section differs from what the script writes",
    ]


def test_the_digest_follows_the_curve(expected):
    """Another parameter value plans another curve, hence another digest; the same command the
    same digest."""
    argv = expected["exponential"]["argv"]
    assert gallery.plan_digest(argv) == expected["exponential"]["digest"]
    changed = ["gamma=0.996" if a.startswith("gamma=") else a for a in argv]
    assert changed != argv
    assert gallery.plan_digest(changed) != expected["exponential"]["digest"]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_strategy_without_an_example_gets_its_declared_one(name):
    """The fallback for a strategy the script does not list: its declaration's example values,
    written so that ``lrsched plot`` reads back the very values."""
    from lightning_lrsched.spec import NO_EXAMPLE

    strategy = STRATEGIES[name]
    values = {k: p.example for k, p in strategy.params().items() if p.example is not NO_EXAMPLE}
    values.update(getattr(strategy, "EXAMPLE_KWARGS", {}))
    assert parse_overrides(gallery.declared_example(name)) == values
