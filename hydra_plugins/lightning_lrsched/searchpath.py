"""Hydra search-path plugin: lightning-lrsched's configs as ``lrsched/<group>`` in any Hydra app.

With the package installed, a user's own Hydra app can compose our options::

    defaults:
      - lrsched/scheduler: cosine            # lands at cfg.lrsched.scheduler
      - lrsched/optimizer@optimizer: adamw   # or anywhere, with @package
      - _self_

and select or tune them from the command line: ``lrsched/scheduler=onecycle
lrsched.scheduler.max_lr=0.3``. Hydra discovers this module through the ``hydra_plugins``
namespace package; importing it registers our structured-config schemas, which the options use.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from lightning_lrsched.app.schemas import register_configs


class LRSchedSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        register_configs()
        search_path.append(provider="lightning-lrsched", path="pkg://lightning_lrsched.conf")
