"""timm's scheduler code, loaded without importing ``timm``.

timm is the reference for ``cosine_restarts``' ``cycle_decay`` / ``cycle_limit`` / ``k_decay``
and for the noise every strategy takes. Its package ``__init__`` imports its models and so
torchvision, which this project never installs (scripts/setup-env.sh installs timm with
``--no-deps``); ``timm/scheduler/scheduler.py`` and ``timm/scheduler/cosine_lr.py`` need only
torch and numpy. So :func:`load_timm_schedulers` finds timm's folder without executing any of
its ``__init__`` files and runs exactly those two files as modules of a private package. If
timm moves or renames them, this fails with an error saying what is missing (the tests fail,
they do not skip).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

PRIVATE = "_timm_reference"  # the package name the two files are loaded under
FILES = ("scheduler", "cosine_lr")  # cosine_lr imports .scheduler: load in this order
EXPECTED = {"scheduler": "Scheduler", "cosine_lr": "CosineLRScheduler"}


@cache
def load_timm_schedulers() -> ModuleType:
    """A private package holding timm's ``Scheduler`` and ``CosineLRScheduler``.

    ``find_spec("timm")`` of a top-level package reads no code; ``submodule_search_locations``
    is its folder. The private package gets ``scheduler/`` as its path, so ``cosine_lr``'s
    ``from .scheduler import Scheduler`` resolves to the file loaded just before it.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("timm is not installed: run scripts/setup-env.sh (timm --no-deps)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "scheduler"
    missing = [name for name in FILES if not (folder / f"{name}.py").is_file()]
    if missing:
        raise RuntimeError(f"timm's layout changed: {folder} has no {missing} (.py)")
    imported_before = "timm" in sys.modules
    package = ModuleType(PRIVATE)
    package.__path__ = [str(folder)]
    package.__spec__ = importlib.machinery.ModuleSpec(PRIVATE, None, is_package=True)
    sys.modules[PRIVATE] = package
    for name in FILES:
        module_spec = importlib.util.spec_from_file_location(
            f"{PRIVATE}.{name}", folder / f"{name}.py"
        )
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
        if not hasattr(module, EXPECTED[name]):
            raise RuntimeError(f"timm's layout changed: {name}.py defines no {EXPECTED[name]}")
        setattr(package, name, module)
        setattr(package, EXPECTED[name], getattr(module, EXPECTED[name]))
    if "timm" in sys.modules and not imported_before:
        raise RuntimeError("loading timm's scheduler files imported the timm package")
    return package
