"""One contract for every accumulator (in the manner of torchmetrics' MetricTester).

Each accumulator is one :class:`Case` in :data:`CASES`; every test runs over all of them:

- any batch split (ragged, batches of 1 and 2 where the estimator allows them) gives the
  in-memory answer;
- merge is associative and commutative, and merging an empty accumulator changes nothing;
- ``state_dict`` round-trips, in memory and through a file, and the restored accumulator goes on;
- ``reset`` forgets everything;
- a state or an accumulator from another class, another setting or other layers is refused with a
  message that says so.

Adding an accumulator means adding one entry to :data:`CASES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from cka_sim import (
    MinibatchCKA,
    StreamingCKA,
    StreamingCKAMatrix,
    cka_matrix,
    deconfounded_cka,
    hsic,
    linear_cka,
)
from cka_sim.kernels import gram_linear

N = 40
Data = dict[str, dict[str, np.ndarray]]


def make_data(seed: int = 0, other_layout: bool = False) -> Data:
    """Two 'models' of the same N examples, with large feature means (so centring matters)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N, 4))
    widths = (5, 3, 4) if not other_layout else (6, 3, 4)
    names = ("conv", "fc", "head") if not other_layout else ("conv2", "fc", "head")
    a = {
        names[0]: base @ rng.standard_normal((4, widths[0])) + 50.0,
        names[1]: np.tanh(base[:, : widths[1]]) + 0.2 * rng.standard_normal((N, widths[1])),
    }
    b = {names[2]: base + 0.5 * rng.standard_normal((N, widths[2])) - 20.0}
    # the confounder of measure="dcka": what both models see, with a large mean of its own
    z = {"inputs": base @ rng.standard_normal((4, 6)) + 0.3 * rng.standard_normal((N, 6)) + 7.0}
    return {"a": a, "b": b, "z": z}


def rows(data: Data, lo: int, hi: int) -> Data:
    return {side: {k: v[lo:hi] for k, v in layers.items()} for side, layers in data.items()}


def _first(layers: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(layers.values()))


def _minibatch_reference(data: Data, sizes: list[int], debiased: bool) -> np.ndarray:
    """Nguyen et al.'s estimator written out: per-batch HSIC averaged, then the ratio."""
    a, b = data["a"], data["b"]
    cross = np.zeros((len(a), len(b)))
    self_a, self_b = np.zeros(len(a)), np.zeros(len(b))
    lo = 0
    for size in sizes:
        ga = [gram_linear(v[lo : lo + size]) for v in a.values()]
        gb = [gram_linear(v[lo : lo + size]) for v in b.values()]
        for i, k in enumerate(ga):
            self_a[i] += hsic(k, k, unbiased=debiased)
            for j, lmat in enumerate(gb):
                cross[i, j] += hsic(k, lmat, unbiased=debiased)
        for j, lmat in enumerate(gb):
            self_b[j] += hsic(lmat, lmat, unbiased=debiased)
        lo += size
    return cross / np.sqrt(np.outer(self_a, self_b))


@dataclass(frozen=True)
class Case:
    """How to drive one accumulator class through the contract."""

    name: str
    make: Callable[[bool], Any]  # debiased -> a fresh accumulator
    feed: Callable[[Any, Data], Any]  # one batch
    value: Callable[[Any], np.ndarray]  # compute() as an array
    truth: Callable[[Data, list[int], bool], np.ndarray]  # the in-memory answer
    min_batch: Callable[[bool], int]
    atol: float = 1e-10


def _feed_shared(acc: Any, batch: Data) -> Any:
    layers = {**batch["a"], **batch["b"]}
    return acc.update(layers, layers)


def _feed_shared_dcka(acc: Any, batch: Data) -> Any:
    layers = {**batch["a"], **batch["b"]}
    return acc.update(layers, layers, _first(batch["z"]))


def _dcka(cls: type) -> Callable[[bool], Any]:
    return lambda debiased: cls(debiased, measure="dcka")


CASES = [
    Case(
        "StreamingCKA",
        StreamingCKA,
        lambda acc, batch: acc.update(_first(batch["a"]), _first(batch["b"])),
        lambda acc: np.asarray(acc.compute()),
        lambda data, sizes, debiased: np.asarray(
            linear_cka(_first(data["a"]), _first(data["b"]), debiased=debiased)
        ),
        lambda debiased: 1,
    ),
    Case(
        "StreamingCKAMatrix",
        StreamingCKAMatrix,
        lambda acc, batch: acc.update(batch["a"], batch["b"]),
        lambda acc: acc.compute().values,
        lambda data, sizes, debiased: cka_matrix(data["a"], data["b"], debiased=debiased).values,
        lambda debiased: 1,
    ),
    Case(
        "StreamingCKAMatrix-shared",
        StreamingCKAMatrix,
        _feed_shared,
        lambda acc: acc.compute().values,
        lambda data, sizes, debiased: (
            cka_matrix(
                {**data["a"], **data["b"]}, {**data["a"], **data["b"]}, debiased=debiased
            ).values
        ),
        lambda debiased: 1,
    ),
    Case(
        "StreamingCKA-dcka",
        _dcka(StreamingCKA),
        lambda acc, batch: acc.update(_first(batch["a"]), _first(batch["b"]), _first(batch["z"])),
        lambda acc: np.asarray(acc.compute()),
        lambda data, sizes, debiased: np.asarray(
            deconfounded_cka(
                _first(data["a"]), _first(data["b"]), _first(data["z"]), debiased=debiased
            )
        ),
        lambda debiased: 1,
    ),
    Case(
        "StreamingCKAMatrix-dcka",
        _dcka(StreamingCKAMatrix),
        lambda acc, batch: acc.update(batch["a"], batch["b"], _first(batch["z"])),
        lambda acc: acc.compute().values,
        lambda data, sizes, debiased: np.array(
            [
                [
                    deconfounded_cka(x, y, _first(data["z"]), debiased=debiased)
                    for y in data["b"].values()
                ]
                for x in data["a"].values()
            ]
        ),
        lambda debiased: 1,
    ),
    Case(
        "StreamingCKAMatrix-shared-dcka",
        _dcka(StreamingCKAMatrix),
        _feed_shared_dcka,
        lambda acc: acc.compute().values,
        lambda data, sizes, debiased: (
            cka_matrix(
                {**data["a"], **data["b"]},
                {**data["a"], **data["b"]},
                debiased=debiased,
                measure="dcka",
                confounder=_first(data["z"]),
            ).values
        ),
        lambda debiased: 1,
    ),
    Case(
        "MinibatchCKA",
        MinibatchCKA,
        lambda acc, batch: acc.update(batch["a"], batch["b"]),
        lambda acc: acc.compute().values,
        lambda data, sizes, debiased: _minibatch_reference(data, sizes, debiased),
        lambda debiased: 4 if debiased else 2,
        atol=1e-12,
    ),
]
SPLITS = {
    "whole": [N],
    "ones": [1] * N,
    "twos": [2] * (N // 2),
    "fours": [4] * (N // 4),
    "ragged": [1, 2, 7, 13, 17],
    "ragged4": [4, 5, 7, 11, 13],
}
cases = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
settings = pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])


def fed(case: Case, debiased: bool, data: Data, sizes: list[int], batches: range | None = None):
    """A fresh accumulator fed the batches ``batches`` (default all) of the split ``sizes``."""
    acc = case.make(debiased)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for t in batches if batches is not None else range(len(sizes)):
        case.feed(acc, rows(data, int(bounds[t]), int(bounds[t + 1])))
    return acc


@cases
@settings
@pytest.mark.parametrize("split", list(SPLITS))
def test_any_split_gives_the_in_memory_answer(case: Case, debiased: bool, split: str) -> None:
    sizes = SPLITS[split]
    if min(sizes) < case.min_batch(debiased):
        pytest.skip(f"{case.name} needs batches of at least {case.min_batch(debiased)}")
    data = make_data()
    acc = fed(case, debiased, data, sizes)
    assert acc.n_examples == N
    truth = case.truth(data, sizes, debiased)
    np.testing.assert_allclose(case.value(acc), truth, rtol=0, atol=case.atol)


@cases
@settings
def test_merge_is_associative_and_commutative(case: Case, debiased: bool) -> None:
    data, sizes = make_data(1), SPLITS["ragged4"]
    groups = [range(0, 2), range(2, 4), range(4, 5)]

    def part(g: int) -> Any:
        return fed(case, debiased, data, sizes, groups[g])

    whole = case.value(fed(case, debiased, data, sizes))
    left = part(0).merge(part(1)).merge(part(2))
    right = part(0).merge(part(1).merge(part(2)))
    swapped = part(2).merge(part(0)).merge(part(1))
    for merged in (left, right, swapped):
        assert merged.n_examples == N
        np.testing.assert_allclose(case.value(merged), whole, rtol=0, atol=case.atol)
    empty = case.make(debiased)
    np.testing.assert_allclose(case.value(part(0).merge(empty)), case.value(part(0)), atol=0)
    np.testing.assert_allclose(case.value(empty.merge(part(1))), case.value(part(1)), atol=0)


@cases
@settings
@pytest.mark.parametrize("through_file", [False, True], ids=["memory", "file"])
def test_state_dict_round_trips_and_goes_on(
    case: Case, debiased: bool, through_file: bool, tmp_path
) -> None:
    data, sizes = make_data(2), SPLITS["ragged4"]
    state = fed(case, debiased, data, sizes, range(0, 3)).state_dict()
    if through_file:
        path = tmp_path / "state.npz"
        np.savez(path, **state)
        with np.load(path, allow_pickle=False) as stored:
            state = {key: stored[key] for key in stored.files}
    restored = case.make(debiased).load_state_dict(state)
    bounds = np.cumsum(sizes)
    for t in range(3, len(sizes)):
        case.feed(restored, rows(data, int(bounds[t - 1]), int(bounds[t])))
    whole = fed(case, debiased, data, sizes)
    assert restored.n_examples == whole.n_examples == N
    np.testing.assert_allclose(case.value(restored), case.value(whole), rtol=0, atol=case.atol)
    empty = case.make(debiased)
    assert case.make(debiased).load_state_dict(empty.state_dict()).n_examples == 0


@cases
@settings
def test_reset_forgets_everything(case: Case, debiased: bool) -> None:
    first, second = make_data(3), make_data(4, other_layout=True)
    acc = fed(case, debiased, first, [N])
    assert acc.reset() is acc
    assert acc.n_examples == 0
    assert acc.state_dict().keys() == case.make(debiased).state_dict().keys()
    with pytest.raises(ValueError, match="update"):
        acc.compute()
    case.feed(acc, second)  # other layers and widths are welcome after a reset
    np.testing.assert_allclose(
        case.value(acc), case.truth(second, [N], debiased), rtol=0, atol=case.atol
    )


@cases
def test_foreign_states_and_accumulators_are_refused(case: Case) -> None:
    data = make_data(5)
    acc = fed(case, True, data, [N])
    for other in CASES:
        foreign = fed(other, True, data, [N])
        if type(foreign) is not type(acc):
            kind = type(foreign).__name__
            with pytest.raises(ValueError, match=f"state_dict is from '{kind}'"):
                case.make(True).load_state_dict(foreign.state_dict())
            with pytest.raises(TypeError, match=f"cannot merge a {kind}"):
                case.make(True).merge(foreign)
        elif getattr(foreign, "measure", None) != getattr(acc, "measure", None):
            mine, theirs = acc.measure, foreign.measure
            with pytest.raises(
                ValueError, match=f"has measure={theirs} but this .* has measure={mine};"
            ):
                case.make(True).load_state_dict(foreign.state_dict())
            with pytest.raises(ValueError, match=f"measure={mine} and measure={theirs}"):
                fed(case, True, data, [N]).merge(foreign)
    biased = fed(case, False, data, [N])
    with pytest.raises(ValueError, match="debiased=False but this .* has debiased=True"):
        case.make(True).load_state_dict(biased.state_dict())
    with pytest.raises(ValueError, match="debiased=True and debiased=False"):
        fed(case, True, data, [N]).merge(biased)
    with pytest.raises(ValueError, match="format"):
        case.make(True).load_state_dict({**acc.state_dict(), "format_version": 99})
    other_layout = fed(case, True, make_data(6, other_layout=True), [N])
    with pytest.raises(ValueError, match="layers"):
        fed(case, True, data, [N]).merge(other_layout)
    before = case.value(acc)
    with pytest.raises(ValueError):
        acc.merge(other_layout)
    np.testing.assert_allclose(case.value(acc), before, atol=0)  # a refused merge changes nothing
