"""Every registered strategy is checked against its reference and has a golden row."""

from __future__ import annotations

import test_hypergradient  # noqa: F401  (its @reference_test registers hypergradient)
import test_parity_hf
import test_parity_timm  # noqa: F401  (cosine_restarts' timm parity)
import test_parity_torch
from references import REFERENCE_TESTS

from lightning_lrsched import STRATEGIES


def test_every_strategy_has_a_reference_test() -> None:
    missing = sorted(set(STRATEGIES) - set(REFERENCE_TESTS))
    assert not missing, f"strategies never compared with their reference: {missing}"
    for name, tests in REFERENCE_TESTS.items():
        assert name in STRATEGIES, f"{tests} claim {name!r}, which is not a strategy"


def test_table_driven_parity_covers_what_it_claims() -> None:
    """The torch table holds a case for each strategy its test declares."""
    claimed = {
        name
        for name, tests in REFERENCE_TESTS.items()
        if "test_parity_torch::test_table_matches_torch" in tests
    }
    in_table = {config["name"] for _, config, *_ in test_parity_torch.CASES}
    assert claimed == in_table
    assert test_parity_hf.test_wsd.__name__ in str(REFERENCE_TESTS["wsd"])
