"""Sample modes of compare_models and record_activations: tokens, positions, pooled; masks,
select=, dict batches, NaN errors, 1-D outputs, the memory budget."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cka_sim import linear_cka  # noqa: E402
from cka_sim.torch import (  # noqa: E402
    BatchKeysDroppedWarning,
    compare_models,
    default_layers,
    layer_table,
    record_activations,
)

TOL = 1e-10


class TinyEncoder(nn.Module):
    """Token embeddings, then two per-token layers; forward(input_ids, attention_mask)."""

    def __init__(self, seed: int, vocab: int = 50, dim: int = 6) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        if attention_mask is not None:  # padded tokens must not change the kept ones
            h = h * attention_mask.unsqueeze(-1)
        return self.out(torch.tanh(self.mix(h)))


def _padded_batches(side: str, seed: int = 0, n_batches: int = 3, batch: int = 5, length: int = 7):
    """Dict batches of ids with random lengths, padded on ``side``; padding ids are random."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(0, 50, (batch, length), generator=g)
        lengths = torch.randint(1, length + 1, (batch,), generator=g)
        positions = torch.arange(length).expand(batch, length)
        if side == "right":
            mask = positions < lengths[:, None]
        else:
            mask = positions >= (length - lengths)[:, None]
        out.append({"input_ids": ids, "attention_mask": mask.long()})
    return out


def _double(model: nn.Module) -> nn.Module:
    return model.double()


def _by_hand(model_a, model_b, batches, layer_a, layer_b, debiased):
    """CKA on the concatenated non-padded token rows, computed with linear_cka."""
    rows_a, rows_b = [], []
    for batch in batches:
        with (
            record_activations(model_a, [layer_a]) as sa,
            record_activations(model_b, [layer_b]) as sb,
        ):
            model_a(**batch)
            model_b(**batch)
        mask = batch["attention_mask"].bool()
        rows_a.append(sa[layer_a][mask])
        rows_b.append(sb[layer_b][mask])
    x = torch.cat(rows_a).numpy()
    y = torch.cat(rows_b).numpy()
    return linear_cka(x, y, debiased=debiased), x.shape[0]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("debiased", [False, True])
def test_token_mode_equals_cka_of_the_non_padded_rows(side, debiased):
    a, b = _double(TinyEncoder(1)), _double(TinyEncoder(2))
    batches = _padded_batches(side)
    expected, n_tokens = _by_hand(a, b, batches, "mix", "out", debiased)
    result = compare_models(
        a,
        b,
        batches,
        layers_a=["mix"],
        layers_b=["out"],
        estimator="exact",
        debiased=debiased,
        samples="tokens",
        progress=False,
    )
    assert abs(result.values[0, 0] - expected) < TOL
    # debiasing counts samples (tokens), not sequences
    assert result.n_examples == n_tokens
    assert n_tokens < sum(b["input_ids"].numel() for b in batches)
    assert result.metadata["samples"] == "tokens"


@pytest.mark.parametrize("side", ["left", "right"])
def test_token_mode_streaming_equals_one_batch(side):
    """Streaming over batches gives the value of all tokens at once (exact estimator)."""
    a, b = _double(TinyEncoder(3)), _double(TinyEncoder(4))
    batches = _padded_batches(side, seed=1)
    streamed = compare_models(
        a,
        b,
        batches,
        layers_a=["embed", "mix"],
        layers_b=["out"],
        estimator="exact",
        samples="tokens",
        progress=False,
    )
    whole = {k: torch.cat([batch[k] for batch in batches]) for k in batches[0]}
    at_once = compare_models(
        a,
        b,
        [whole],
        layers_a=["embed", "mix"],
        layers_b=["out"],
        estimator="exact",
        samples="tokens",
        progress=False,
    )
    np.testing.assert_allclose(streamed.values, at_once.values, rtol=0, atol=TOL)


def test_padding_changes_the_result_unless_masked():
    """Left in, padded tokens change the value; cut, they do not (the issue's tenfold case)."""
    a, b = _double(TinyEncoder(5)), _double(TinyEncoder(6))
    batches = _padded_batches("right", seed=2)
    kwargs = dict(
        layers_a=["mix"], layers_b=["mix"], estimator="exact", samples="tokens", progress=False
    )
    masked = compare_models(a, b, batches, **kwargs).values[0, 0]
    unmasked = compare_models(a, b, batches, mask=None, **kwargs).values[0, 0]
    by_key = compare_models(a, b, batches, mask="attention_mask", **kwargs).values[0, 0]
    by_callable = compare_models(
        a, b, batches, mask=lambda batch: batch["attention_mask"], **kwargs
    ).values[0, 0]
    assert masked == by_key == by_callable
    assert abs(masked - unmasked) > 1e-3


def test_minibatch_token_mode_uses_all_tokens_of_a_batch_as_one_minibatch():
    a, b = _double(TinyEncoder(7)), _double(TinyEncoder(8))
    batches = _padded_batches("left", seed=3, batch=6)
    result = compare_models(
        a,
        b,
        batches,
        layers_a=["mix"],
        layers_b=["out"],
        estimator="minibatch",
        samples="tokens",
        progress=False,
    )
    from cka_sim import MinibatchCKA

    acc = MinibatchCKA()
    for batch in batches:
        with record_activations(a, ["mix"]) as sa, record_activations(b, ["out"]) as sb:
            a(**batch)
            b(**batch)
        mask = batch["attention_mask"].bool()
        acc.update({"mix": sa["mix"][mask]}, {"out": sb["out"][mask]})
    assert abs(result.values[0, 0] - acc.compute().values[0, 0]) < TOL
    assert result.n_examples == sum(int(b["attention_mask"].sum()) for b in batches)


@pytest.mark.parametrize("pooling", ["mean", "first", "last"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_pooled_modes_use_only_the_non_padded_tokens(pooling, side):
    a, b = _double(TinyEncoder(9)), _double(TinyEncoder(10))
    batches = _padded_batches(side, seed=4)
    result = compare_models(
        a,
        b,
        batches,
        layers_a=["mix"],
        layers_b=["out"],
        estimator="exact",
        samples="pooled",
        pooling=pooling,
        progress=False,
    )
    rows_a, rows_b = [], []
    for batch in batches:
        with record_activations(a, ["mix"]) as sa, record_activations(b, ["out"]) as sb:
            a(**batch)
            b(**batch)
        for i, keep in enumerate(batch["attention_mask"].bool()):
            idx = torch.nonzero(keep).flatten()
            pick = {"mean": idx, "first": idx[:1], "last": idx[-1:]}[pooling]
            rows_a.append(sa["mix"][i, pick].mean(0))
            rows_b.append(sb["out"][i, pick].mean(0))
    expected = linear_cka(torch.stack(rows_a).numpy(), torch.stack(rows_b).numpy(), debiased=True)
    assert abs(result.values[0, 0] - expected) < TOL
    assert result.n_examples == sum(len(b["input_ids"]) for b in batches)


def test_pooling_callable_and_record_activations_mask_from_the_call():
    a = _double(TinyEncoder(11))
    batch = _padded_batches("right", seed=5, n_batches=1)[0]
    with record_activations(a, ["mix"], samples="tokens") as store:
        a(**batch)  # mask="auto": the attention_mask keyword argument of the call
    assert store["mix"].shape == (int(batch["attention_mask"].sum()), 5)
    with record_activations(
        a, ["mix"], samples="pooled", pooling=lambda out, mask: out.amax(dim=1)
    ) as store:
        a(**batch)
    assert store["mix"].shape == (5, 5)


class TinyCNN(nn.Module):
    def __init__(self, seed: int, size: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(size // 2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


def test_positions_mode_is_one_row_per_spatial_position_and_grid_pools():
    a, b = TinyCNN(1).double(), TinyCNN(2).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 8, 8, generator=g, dtype=torch.float64)
    result = compare_models(
        a,
        b,
        [x],
        layers_a=["conv"],
        layers_b=["conv"],
        estimator="exact",
        samples="positions",
        progress=False,
    )
    with record_activations(a, ["conv"]) as sa, record_activations(b, ["conv"]) as sb:
        a(x)
        b(x)
    rows = [s["conv"].permute(0, 2, 3, 1).reshape(-1, 4).numpy() for s in (sa, sb)]
    assert abs(result.values[0, 0] - linear_cka(*rows, debiased=True)) < TOL
    assert result.n_examples == 6 * 64
    # maps of different sizes: refused without grid=, pooled to one size with it
    with pytest.raises(ValueError, match="grid="):
        compare_models(
            a,
            b,
            [x],
            layers_a=["conv"],
            layers_b=["pool"],
            estimator="exact",
            samples="positions",
            progress=False,
        )
    pooled = compare_models(
        a,
        b,
        [x],
        layers_a=["conv"],
        layers_b=["pool"],
        estimator="exact",
        samples="positions",
        grid=4,
        progress=False,
    )
    assert pooled.n_examples == 6 * 16


def test_models_that_tokenise_differently_are_refused():
    class Longer(TinyEncoder):
        def forward(self, input_ids, attention_mask=None):
            return super().forward(torch.cat([input_ids, input_ids[:, :1]], dim=1))

    batches = _padded_batches("right", n_batches=1)
    with pytest.raises(ValueError, match="tokenise differently"):
        compare_models(
            TinyEncoder(1),
            Longer(2),
            batches,
            layers_a=["mix"],
            layers_b=["mix"],
            estimator="exact",
            samples="tokens",
            progress=False,
        )
    with pytest.raises(ValueError, match="tokens, features"):
        compare_models(
            TinyCNN(1),
            TinyCNN(2),
            [torch.randn(4, 2, 8, 8)],
            layers_a=["conv"],
            layers_b=["conv"],
            samples="tokens",
            progress=False,
        )


def test_select_and_dict_batches_passed_whole():
    class Named(nn.Module):
        def __init__(self, seed):
            super().__init__()
            self.enc = TinyEncoder(seed)

        def forward(self, input_ids, attention_mask=None):
            h = self.enc(input_ids, attention_mask)
            return {"pooled": h.mean(1), "tokens": h}

    a, b = Named(1).double(), Named(2).double()
    batches = [dict(b, labels=torch.zeros(5)) for b in _padded_batches("right", n_batches=2)]
    with pytest.warns(BatchKeysDroppedWarning, match="labels"):
        result = compare_models(
            a,
            b,
            batches,
            layers_a=[""],
            layers_b=[""],
            select="pooled",
            estimator="exact",
            progress=False,
        )
    assert result.n_examples == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = compare_models(
            a,
            b,
            _padded_batches("right", n_batches=2),
            layers_a=[""],
            layers_b=[""],
            select=("tokens", "tokens"),
            samples="tokens",
            estimator="exact",
            progress=False,
        )
    assert both.metadata["samples"] == "tokens"


def test_nan_activation_names_the_layer_and_the_batch():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    data = [torch.randn(8, 3), torch.randn(8, 3)]
    data[1][2, 0] = float("nan")
    for estimator in ("exact", "minibatch"):
        with pytest.raises(ValueError, match=r"layer '0' of model_a .* batch 1"):
            compare_models(
                net,
                nn.Sequential(nn.Linear(3, 2)),
                data,
                layers_a=["0", "1"],
                layers_b=["0"],
                estimator=estimator,
                progress=False,
            )


def test_one_dimensional_outputs_agree_between_estimators():
    class Score(nn.Module):
        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(seed)
            self.lin = nn.Linear(3, 1)
            self.score = nn.Flatten(0)

        def forward(self, x):
            return self.score(self.lin(x))  # (batch,)

    a, b = Score(1).double(), Score(2).double()
    x = [torch.randn(64, 3, dtype=torch.float64)]
    exact = compare_models(
        a, b, x, layers_a=["score"], layers_b=["lin"], estimator="exact", progress=False
    )
    mini = compare_models(
        a, b, x, layers_a=["score"], layers_b=["lin"], estimator="minibatch", progress=False
    )
    assert abs(exact.values[0, 0] - mini.values[0, 0]) < 1e-8  # one batch: the same HSIC₁


def test_infeasible_exact_comparison_fails_fast_with_the_bytes():
    class Wide(nn.Module):
        """A 131,072-wide layer that costs nothing to run (a broadcast view)."""

        def forward(self, x):
            return x[:, :1].expand(-1, 2**17) * 1.0

    # four parallel 131,072-wide layers (every one reads the input): about 4.4 TB exact
    class Parallel(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList([Wide() for _ in range(4)])

        def forward(self, x):
            return [head(x) for head in self.heads]

    model, other = Parallel(), Parallel()
    names = [f"heads.{i}" for i in range(4)]
    x = [torch.randn(1, 4)]
    start = time.perf_counter()
    with pytest.raises(MemoryError, match=r"bytes .*estimator='minibatch'"):
        compare_models(
            model,
            other,
            x,
            layers_a=names,
            layers_b=names,
            estimator="exact",
            progress=False,
        )
    assert time.perf_counter() - start < 1.0
    with pytest.raises(MemoryError, match="minibatch"):
        compare_models(
            model,
            model,
            [torch.randn(16, 4)],
            layers_a=names[:2],
            layers_b=names[:2],
            estimator="minibatch",
            memory_budget_bytes=2**12,
            progress=False,
        )


def test_dcka_default_confounder_is_sketched_when_wide():
    from cka_sim.torch.confounder import SKETCH_WIDTH

    torch.manual_seed(0)
    net_a = nn.Sequential(nn.Flatten(), nn.Linear(1200, 8))
    net_b = nn.Sequential(nn.Flatten(), nn.Linear(1200, 8))
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(64, 3, 20, 20, generator=g, dtype=torch.float64) for _ in range(2)]
    kw = dict(layers_a=["1"], layers_b=["1"], measure="dcka", progress=False)
    sketched = compare_models(net_a.double(), net_b.double(), x, **kw)
    full = compare_models(net_a, net_b, x, confounder="input", **kw)
    assert "sketch" in sketched.metadata["confounder"]
    assert 1200 > SKETCH_WIDTH
    assert abs(sketched.values[0, 0] - full.values[0, 0]) < 0.1
    with pytest.raises(ValueError, match="one row per sample"):
        compare_models(net_a, net_b, x, samples="positions", **kw)


def test_default_layers_pick_blocks_and_skip_outputs_without_a_batch_dimension():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return x + torch.tanh(self.lin(x))

    class WithTable(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(3, 4)
            self.table = nn.Embedding(5, 4)  # looked up once per batch, not per example
            self.blocks = nn.ModuleList([Block(), Block(), Block()])

        def forward(self, x):
            h = self.stem(x) + self.table(torch.zeros(1, dtype=torch.long))
            for block in self.blocks:
                h = block(h)
            return h

    model = WithTable()
    assert default_layers(model) == ["blocks.0", "blocks.1", "blocks.2"]
    flat = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert default_layers(flat) == ["0", "2"]  # no repeated blocks: parameterised leaves

    class Leaves(WithTable):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Identity()])

    with pytest.warns(UserWarning, match=r"left out \['table'\]"):
        assert default_layers(Leaves(), torch.randn(6, 3)) == ["stem"]
    with pytest.warns(UserWarning, match="table"):
        result = compare_models(
            Leaves(), Leaves(), [torch.randn(6, 3)], estimator="exact", progress=False
        )
    assert result.row_names == ["stem"]
    table = layer_table(model, torch.randn(6, 3), ["stem", "table", "blocks.0"])
    assert [(i.name, i.shape, i.width) for i in table] == [
        ("stem", (6, 4), 4),
        ("table", (1, 4), 4),
        ("blocks.0", (6, 4), 4),
    ]
