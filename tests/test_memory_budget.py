"""The memory budget (cka_sim._core.memory): taken from the machine, refusals that name the bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cka_sim._core import memory


def test_available_memory_is_positive_and_auto_is_a_fraction_of_it():
    available = memory.available_bytes()
    assert available > 0
    budget = memory.resolve_budget("auto")
    # the machine's free memory moves between the two reads: compare loosely
    assert 0 < budget <= available
    assert budget == pytest.approx(memory.BUDGET_FRACTION * available, rel=0.2)


def test_none_is_no_limit_and_ints_are_kept():
    assert memory.resolve_budget(None) is None
    assert memory.resolve_budget(123) == 123
    memory.check_budget(10**15, None, "x", "y")  # no limit: no error


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "lots"])
def test_bad_budgets_are_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="'auto'.*None"):
        memory.resolve_budget(bad)


@given(need=st.integers(1, 2**50), budget=st.integers(1, 2**50))
def test_refusal_exactly_when_over_budget_and_names_the_bytes(need, budget):
    if need <= budget:
        memory.check_budget(need, budget, "the thing", "Do less.")
        return
    with pytest.raises(MemoryError) as info:
        memory.check_budget(need, budget, "the thing", "Do less.")
    message = str(info.value)
    assert f"{need:,} bytes" in message and f"{budget:,} bytes" in message
    assert "the thing" in message and "Do less." in message


def test_format_bytes_units():
    assert memory.format_bytes(512) == "512 bytes"
    assert memory.format_bytes(3 * 2**30) == "3,221,225,472 bytes (3.00 GiB)"
