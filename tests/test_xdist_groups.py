"""The suite's run time relies on ``pytest-xdist``'s ``--dist loadgroup``: tests that share an
expensive module fixture (processes started once for several tests) carry one
``xdist_group`` and must run on one worker, or every worker starts those processes again.

pytest 9.2 with pytest-xdist 3.8 silently stopped grouping (xdist sets a private node-id
attribute that pytest 9.2 no longer reads); this test runs a throwaway suite the way
``scripts/test.sh`` runs ours and fails when the grouped tests are spread over workers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

THROWAWAY = """
import pytest

@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    pass
"""


@pytest.mark.slow
def test_loadgroup_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_throwaway.py").write_text(THROWAWAY)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "test_throwaway.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    workers = re.findall(r"\[(gw\d+)\].*PASSED", done.stdout)
    assert len(workers) == 6, done.stdout[-2000:]
    assert len(set(workers)) == 1, (
        f"--dist loadgroup spread one xdist_group over workers {sorted(set(workers))}: "
        "install the dev environment with constraints.txt (see its note on pytest)"
    )
