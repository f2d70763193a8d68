"""cka_sim.torch: layer capture by exact name, and compare_models over a data loader."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from cka_sim import gram_linear, hsic, linear_cka
from cka_sim.torch import (
    ActivationStore,
    LayerCalledTwiceWarning,
    compare_models,
    default_layers,
    extract_inputs,
    first_tensor,
    record_activations,
)

# --- models ------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Registers ``late`` before ``early`` but runs ``early`` first."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.late = nn.Linear(width, 3)
        self.act = nn.Tanh()
        self.early = nn.Linear(4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(self.act(self.early(x)))


class Rotated(nn.Module):
    """``proj`` is an exact orthogonal transform of ``Encoder.early``; ``noise`` ignores the input.

    ``noise`` is registered first but runs last, so registration order differs from run order.
    """

    def __init__(self, encoder: Encoder, q: torch.Tensor, seed: int = 7) -> None:
        super().__init__()
        self.noise = NoiseLayer(5, seed)
        self.proj = nn.Linear(4, q.shape[0])
        with torch.no_grad():
            self.proj.weight.copy_(q @ encoder.early.weight)
            self.proj.bias.copy_(q @ encoder.early.bias)
        self.head = nn.Linear(q.shape[0], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(torch.relu(self.proj(x)))
        return h + 0 * self.noise(x).sum()


class NoiseLayer(nn.Module):
    """Outputs standard normal noise independent of its input (a reproducible stream)."""

    def __init__(self, width: int, seed: int) -> None:
        super().__init__()
        self.width = width
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], self.width, generator=self.generator, dtype=torch.float64)
        return noise.to(x.dtype)


class Counting(nn.Module):
    """A small MLP that counts its forward calls and remembers its mode and inference state."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)
        self.calls = 0
        self.seen_training: list[bool] = []
        self.seen_inference: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen_training.append(self.training)
        self.seen_inference.append(torch.is_inference_mode_enabled())
        return self.fc2(torch.relu(self.fc1(x)))


def orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q


def data(n: int = 96, p: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def batches(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(torch.split(x, size))


def related_pair() -> tuple[Encoder, Rotated]:
    torch.manual_seed(0)
    encoder = Encoder().double()
    return encoder, Rotated(encoder, orthogonal(6, 1)).double()


def assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks, name
        assert not module._forward_pre_hooks, name
        assert not module._forward_hooks_always_called, name


# --- record_activations: names ------------------------------------------------------------------


def test_records_by_exact_name_not_by_registration_or_firing_order():
    model = Encoder().double()
    x = data(10)
    with record_activations(model, ["late", "early"]) as acts:
        out = model(x)
    assert list(acts) == ["late", "early"]
    early = model.early(x)
    torch.testing.assert_close(acts["early"], early, rtol=0, atol=0)
    torch.testing.assert_close(acts["late"], out, rtol=0, atol=0)


def test_integer_indices_follow_named_modules_order_and_root_is_allowed():
    model = Encoder().double()
    names = [name for name, _ in model.named_modules()]
    assert names == ["", "late", "act", "early"]
    x = data(5)
    with record_activations(model, [0, 3, -3]) as acts:
        out = model(x)
    assert acts.layers == ("", "early", "late")
    torch.testing.assert_close(acts[""], out, rtol=0, atol=0)
    torch.testing.assert_close(acts["early"], model.early(x), rtol=0, atol=0)


def test_single_name_is_one_layer_not_its_characters():
    model = nn.Sequential(nn.Linear(2, 2))
    with record_activations(model, "0") as acts:
        model(torch.randn(3, 2))
    assert list(acts) == ["0"]


@given(
    widths=st.lists(st.integers(1, 5), min_size=2, max_size=6),
    data_=st.data(),
)
def test_property_every_recorded_output_is_the_prefix_output(widths, data_):
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise(widths):
        layers += [nn.Linear(w_in, w_out), nn.Tanh()]
    model = nn.Sequential(*layers).double()
    names = [str(i) for i in range(len(layers))]
    chosen = data_.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    x = torch.randn(3, widths[0], dtype=torch.float64)
    with record_activations(model, chosen) as acts:
        model(x)
    assert list(acts) == chosen
    for name in chosen:
        expected = model[: int(name) + 1](x)
        torch.testing.assert_close(acts[name], expected, rtol=0, atol=0)


def test_unknown_name_lists_close_matches():
    model = nn.Sequential(OrderedDict(encoder=nn.Sequential(OrderedDict(conv1=nn.Linear(2, 2)))))
    with pytest.raises(ValueError, match=r"no module named 'encoder.conv'.*'encoder\.conv1'"):
        with record_activations(model, ["encoder.conv"]):
            pass
    # A short name is never matched, only suggested.
    with pytest.raises(ValueError, match=r"'conv1'.*close matches: \['encoder\.conv1'\]"):
        with record_activations(model, ["conv1"]):
            pass
    assert_no_hooks(model)


@pytest.mark.parametrize(
    ("layers", "error", "pattern"),
    [
        ([5], ValueError, r"index 5 is out of range.*2 modules"),
        (["0", 1], ValueError, r"names the module '0' twice"),
        ([], ValueError, r"layers is empty"),
        ([True], TypeError, r"bool"),
        ([1.5], TypeError, r"got float 1\.5"),
        (3.0, TypeError, r"must be a sequence"),
    ],
)
def test_bad_layer_specs(layers, error, pattern):
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(error, match=pattern):
        with record_activations(model, layers):
            pass
    assert_no_hooks(model)


def test_shared_module_may_be_named_by_any_alias():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerCalledTwiceWarning)
        with record_activations(model, ["2"]) as acts:
            out = model(torch.randn(4, 3))
    torch.testing.assert_close(acts["2"], out)


# --- record_activations: cleanup ---------------------------------------------------------------


def test_hooks_removed_and_modes_restored_on_exit_and_on_exception():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model: a mixed state
    before = {name: m.training for name, m in model.named_modules()}
    with record_activations(model, ["0", "1", ""]) as acts:
        model.eval()
        model(torch.randn(5, 3))
    assert set(acts) == {"0", "1", ""}
    assert_no_hooks(model)
    assert {name: m.training for name, m in model.named_modules()} == before

    with pytest.raises(RuntimeError, match="boom"):
        with record_activations(model, ["0", "2"]):
            model.eval()
            raise RuntimeError("boom")
    assert_no_hooks(model)
    assert {name: m.training for name, m in model.named_modules()} == before


def test_hooks_removed_when_forward_raises():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2))  # shape error in the second layer
    with pytest.raises(RuntimeError):
        with record_activations(model, ["0", "1"]) as acts:
            model(torch.randn(2, 3))
    assert list(acts) == ["0"]
    assert_no_hooks(model)


# --- record_activations: outputs ---------------------------------------------------------------


@dataclasses.dataclass
class PlainOutput:
    note: str
    hidden: torch.Tensor
    logits: torch.Tensor


class ModelOutputLike(OrderedDict):
    """Mimics a Hugging Face ``ModelOutput``: a dict of the fields that are set, in field order."""


class MultiOutput(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> Any:
        h = self.fc(x)
        if self.kind == "tuple":
            return h, (2 * h, 3 * h)
        if self.kind == "dict":
            return {"hidden": h, "logits": 2 * h}
        if self.kind == "model_output":
            return ModelOutputLike(loss=None, logits=h)
        if self.kind == "dataclass":
            return PlainOutput("text", h, 2 * h)
        if self.kind == "nested":
            return ("no tensor here", [None, {"a": h}])
        return "not a tensor"


class Wrapper(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.inner = MultiOutput(kind)

    def forward(self, x: torch.Tensor) -> Any:
        return self.inner(x)


@pytest.mark.parametrize("kind", ["tuple", "dict", "model_output", "dataclass", "nested"])
def test_default_selection_takes_the_first_tensor(kind):
    model = Wrapper(kind)
    x = torch.randn(5, 3)
    with record_activations(model, ["inner"]) as acts:
        model(x)
    torch.testing.assert_close(acts["inner"], model.inner.fc(x))


def test_lstm_output_is_the_sequence_output():
    lstm = nn.LSTM(3, 4, batch_first=True)
    model = nn.Sequential(lstm)
    x = torch.randn(2, 5, 3)
    with record_activations(model, ["0"]) as acts:
        out, _ = model(x)
    assert acts["0"].shape == (2, 5, 4)
    torch.testing.assert_close(acts["0"], out)


def test_selectors_index_key_attribute_callable_and_per_layer():
    x = torch.randn(5, 3)
    model = Wrapper("tuple")
    with record_activations(model, ["inner"], select=lambda out: out[1][1]) as acts:
        model(x)
    torch.testing.assert_close(acts["inner"], 3 * model.inner.fc(x))
    with record_activations(model, ["inner"], select=1) as acts:
        with pytest.raises(TypeError, match=r"layer 'inner': the index 1 gave tuple"):
            model(x)
    model = Wrapper("dict")
    with record_activations(model, ["inner"], select={"inner": "logits"}) as acts:
        model(x)
    torch.testing.assert_close(acts["inner"], 2 * model.inner.fc(x))
    with record_activations(model, ["inner"], select="missing") as acts:
        with pytest.raises(ValueError, match=r"'missing' is not a key.*\['hidden', 'logits'\]"):
            model(x)
    model = Wrapper("dataclass")
    with record_activations(model, ["inner"], select="logits") as acts:
        model(x)
    torch.testing.assert_close(acts["inner"], 2 * model.inner.fc(x))
    with pytest.raises(ValueError, match=r"select has entries for \['nope'\]"):
        with record_activations(model, ["inner"], select={"nope": 0}):
            pass
    with pytest.raises(TypeError, match="select must be None"):
        with record_activations(model, ["inner"], select=2.5):  # type: ignore[arg-type]
            pass


def test_output_without_tensor_is_a_clear_error():
    model = Wrapper("none")
    with record_activations(model, ["inner"]):
        with pytest.raises(TypeError, match=r"layer 'inner'.*gave NoneType.*pass select="):
            model(torch.randn(2, 3))
    assert_no_hooks(model)


def test_first_tensor_rules():
    a, b = torch.zeros(1), torch.ones(1)
    assert first_tensor(a) is a
    assert first_tensor((None, [b, a])) is b
    assert first_tensor({"x": None, "y": a}) is a
    assert first_tensor(PlainOutput("n", b, a)) is b
    assert first_tensor(("a", 1)) is None


def test_clone_protects_against_downstream_in_place_ops():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(inplace=True))
    x = torch.randn(20, 3)
    pre_relu = model[0](x)
    assert (pre_relu < 0).any()
    with record_activations(model, ["0"]) as acts:
        model(x)
    torch.testing.assert_close(acts["0"], pre_relu)
    with record_activations(model, ["0"], clone=False) as acts:
        model(x)
    assert not (acts["0"] < 0).any()  # why clone=True is the default


def test_transform_result_is_stored_and_is_safe_from_in_place_ops():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(inplace=True))
    x = torch.randn(20, 3)
    pre_relu = model[0](x).detach()
    with record_activations(model, ["0"], transform=lambda t: 2 * t.flatten(1)) as acts:
        model(x)
    torch.testing.assert_close(acts["0"], 2 * pre_relu)


def test_compare_models_sees_the_output_before_a_later_in_place_relu():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 12), nn.ReLU(inplace=True), nn.Linear(12, 6))
    x = torch.randn(90, 4)
    loader = batches(x, 30)
    with torch.no_grad():
        pre_relu = model[0](x)
        post = model[2](torch.relu(pre_relu))
    assert (pre_relu < 0).any()
    for estimator in ("minibatch", "exact"):
        result = compare_models(
            model,
            model,
            loader,
            layers_a=["0"],
            layers_b=["2"],
            estimator=estimator,
            progress=False,
        )
        if estimator == "exact":
            expected = linear_cka(pre_relu.double().numpy(), post.double().numpy(), debiased=True)
        else:
            xy = xx = yy = 0.0
            for rows in (slice(0, 30), slice(30, 60), slice(60, 90)):
                k = gram_linear(pre_relu[rows].double().numpy())
                l = gram_linear(post[rows].double().numpy())
                xy += hsic(k, l, unbiased=True)
                xx += hsic(k, k, unbiased=True)
                yy += hsic(l, l, unbiased=True)
            expected = xy / np.sqrt(xx * yy)
        assert result.values[0, 0] == pytest.approx(expected, rel=1e-6)


def test_detach_false_keeps_the_graph():
    model = nn.Sequential(nn.Linear(3, 2))
    with record_activations(model, ["0"]) as acts:
        model(torch.randn(4, 3))
    assert not acts["0"].requires_grad
    with record_activations(model, ["0"], detach=False) as acts:
        model(torch.randn(4, 3))
    acts["0"].sum().backward()
    assert model[0].weight.grad is not None


def test_twice_firing_warning_names_the_module():
    relu = nn.ReLU()
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 3), act=relu, fc2=nn.Linear(3, 3)))
    model.add_module("act2", relu)
    with pytest.warns(LayerCalledTwiceWarning, match=r"module 'act' of Sequential ran more than"):
        with record_activations(model, ["act", "fc1"]) as acts:
            out = model(torch.randn(4, 3))
    torch.testing.assert_close(acts["act"], out)  # the last call's output


def test_no_warning_for_one_call_per_forward_or_direct_submodule_calls():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with record_activations(model, ["0", "1"]) as acts:
            for _ in range(3):
                model(torch.randn(4, 3))
            model[0](torch.randn(2, 3))
            model[0](torch.randn(2, 3))
    assert acts["0"].shape == (2, 3)


def test_store_errors_and_clear():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with record_activations(model, ["0"]) as acts:
        assert isinstance(acts, ActivationStore)
        with pytest.raises(KeyError, match="has not run"):
            acts["0"]
        model(torch.randn(2, 3))
        assert len(acts) == 1 and acts.missing() == []
        acts.clear()
        assert acts.missing() == ["0"]
    with pytest.raises(KeyError, match=r"'1' is not recorded; recorded layers are \['0'\]"):
        acts["1"]


def test_non_module_is_a_type_error():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got function"):
        with record_activations(lambda x: x, ["0"]):  # type: ignore[arg-type]
            pass


# --- batches -----------------------------------------------------------------------------------


def test_extract_inputs_rules():
    x, y = torch.zeros(2, 3), torch.ones(2)
    assert extract_inputs(x) is x
    assert extract_inputs((x, y)) is x
    assert extract_inputs([y, x], 1) is x
    assert extract_inputs({"label": y, "pixel_values": x}) is x
    assert extract_inputs({"label": [1, 2], "features": x}) is x  # the only tensor
    assert extract_inputs({"a": x, "b": y}, "b") is y
    assert extract_inputs({"a": x}, lambda batch: batch["a"] + 1).sum() == 6
    with pytest.raises(ValueError, match=r"cannot tell which entry.*\['a', 'b'\].*input_key"):
        extract_inputs({"a": x, "b": y})
    with pytest.raises(ValueError, match=r"input_key='c' is not a key.*\['a', 'b'\]"):
        extract_inputs({"a": x, "b": y}, "c")
    with pytest.raises(ValueError, match="input_key=2 is out of range"):
        extract_inputs((x, y), 2)
    with pytest.raises(ValueError, match="batch is a tensor"):
        extract_inputs(x, "x")
    with pytest.raises(TypeError, match="unsupported batch type str"):
        extract_inputs("x")


# --- compare_models ----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["exact", "minibatch"])
def test_orthogonal_transform_gives_one_and_noise_gives_low(estimator):
    encoder, rotated = related_pair()
    loader = batches(data(240), 40)
    result = compare_models(
        encoder,
        rotated,
        loader,
        layers_a=["early", "late"],
        layers_b=["noise", "proj"],
        estimator=estimator,
        progress=False,
    )
    assert result.row_names == ["early", "late"]
    assert result.col_names == ["noise", "proj"]
    assert result.n_examples == 240
    assert result.value("early", "proj") == pytest.approx(1.0, abs=1e-6)
    assert abs(result.value("early", "noise")) < 0.1
    assert abs(result.value("late", "noise")) < 0.1
    assert result.value("late", "proj") < 1 - 1e-3


def test_exact_estimator_equals_in_memory_linear_cka():
    encoder, rotated = related_pair()
    x = data(150)
    loader = batches(x, 37)  # ragged last batch
    for debiased in (False, True):
        result = compare_models(
            encoder,
            rotated,
            loader,
            layers_a=["late", "early"],
            layers_b=["head"],
            estimator="exact",
            debiased=debiased,
            progress=False,
        )
        with torch.no_grad():
            late, head = encoder(x), rotated(x)
            early = encoder.early(x)
        expected = [linear_cka(a.numpy(), head.numpy(), debiased=debiased) for a in (late, early)]
        np.testing.assert_allclose(result.values[:, 0], expected, rtol=1e-10, atol=1e-12)


def test_minibatch_estimator_equals_the_per_batch_hsic_average():
    encoder, rotated = related_pair()
    x = data(120)
    loader = batches(x, 50)  # 50, 50, 20
    result = compare_models(
        encoder, rotated, loader, layers_a=["late"], layers_b=["head"], progress=False
    )
    xy = xx = yy = 0.0
    with torch.no_grad():
        for batch in loader:
            k = gram_linear(encoder(batch).numpy())
            l = gram_linear(rotated(batch).numpy())
            xy += hsic(k, l, unbiased=True)
            xx += hsic(k, k, unbiased=True)
            yy += hsic(l, l, unbiased=True)
    assert result.values[0, 0] == pytest.approx(xy / np.sqrt(xx * yy), rel=1e-9)


def test_rows_and_columns_follow_the_order_given():
    encoder, rotated = related_pair()
    loader = batches(data(80), 40)
    kwargs = {"estimator": "exact", "progress": False}
    forward = compare_models(
        encoder, rotated, loader, layers_a=["early", "late"], layers_b=["proj", "head"], **kwargs
    )
    backward = compare_models(
        encoder, rotated, loader, layers_a=["late", "early"], layers_b=["head", "proj"], **kwargs
    )
    assert backward.row_names == ["late", "early"] and backward.col_names == ["head", "proj"]
    np.testing.assert_allclose(backward.values, forward.values[::-1, ::-1], rtol=1e-12)


def test_same_model_runs_one_forward_per_batch():
    torch.manual_seed(0)
    model = Counting()
    loader = batches(data(60).float(), 20)
    result = compare_models(
        model, model, loader, layers_a=["fc1", "fc2"], layers_b=["fc2"], progress=False
    )
    assert model.calls == 3
    assert result.value("fc2", "fc2") == pytest.approx(1.0, abs=1e-6)
    assert result.metadata["same_model"] is True


def test_two_models_run_in_eval_and_inference_mode_and_are_restored():
    torch.manual_seed(0)
    a, b = Counting(), Counting()
    a.train()
    b.eval()
    b.fc1.train()
    before_a = [m.training for m in a.modules()]
    before_b = [m.training for m in b.modules()]
    layers = ["fc1", "fc2"]  # named: default layers would add one probing pass
    compare_models(
        a, b, batches(data(40).float(), 20), layers_a=layers, layers_b=layers, progress=False
    )
    assert a.calls == b.calls == 2
    assert a.seen_training == b.seen_training == [False, False]
    assert a.seen_inference == b.seen_inference == [True, True]
    assert [m.training for m in a.modules()] == before_a
    assert [m.training for m in b.modules()] == before_b
    assert_no_hooks(a)
    assert_no_hooks(b)


def test_error_mid_loader_removes_hooks_and_restores_modes():
    torch.manual_seed(0)
    a, b = Counting(), Counting()
    a.train()

    def failing_loader():
        yield data(8).float()
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        compare_models(a, b, failing_loader(), progress=False)
    assert a.training and all(m.training for m in a.modules())
    assert_no_hooks(a)
    assert_no_hooks(b)


@pytest.mark.parametrize("form", ["tensor", "tuple", "list", "dict", "dict_key", "callable"])
def test_batch_forms_give_the_same_result(form):
    encoder, rotated = related_pair()
    x = data(90)
    y = torch.arange(90)
    make = {
        "tensor": lambda xb, yb: xb,
        "tuple": lambda xb, yb: (xb, yb),
        "list": lambda xb, yb: [xb, yb],
        "dict": lambda xb, yb: {"label": yb, "x": xb},
        "dict_key": lambda xb, yb: {"label": yb, "feats": xb, "other": xb + 1},
        "callable": lambda xb, yb: {"inputs": (xb,)},
    }[form]
    input_key = {"dict_key": "feats", "callable": lambda batch: batch["inputs"]}.get(form)
    loader = [make(xb, yb) for xb, yb in zip(x.split(30), y.split(30), strict=True)]
    reference = compare_models(encoder, rotated, batches(x, 30), progress=False)
    result = compare_models(encoder, rotated, loader, progress=False, input_key=input_key)
    np.testing.assert_allclose(result.values, reference.values, rtol=1e-12)


def test_default_layers_are_parameterised_leaves():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(2), nn.Dropout()), nn.Flatten()
    )
    assert default_layers(model) == ["0", "2.0"]
    encoder, rotated = related_pair()
    result = compare_models(encoder, rotated, batches(data(40), 20), progress=False)
    assert result.row_names == ["late", "early"]  # named_modules() order
    assert result.col_names == ["proj", "head"]


def test_metadata_records_the_comparison():
    encoder, rotated = related_pair()
    result = compare_models(
        encoder, rotated, batches(data(40), 20), layers_a=[3], estimator="exact", progress=False
    )
    meta = result.metadata
    assert meta["model_a"] == "Encoder" and meta["model_b"] == "Rotated"
    assert meta["layers_a"] == ["early"] and meta["layers_b"] == ["proj", "head"]
    assert meta["estimator"] == "exact" and meta["debiased"] is True
    assert meta["activation_dtype"] == ["torch.float64"]
    assert meta["device"] == "cpu" and meta["n_batches"] == 2 and meta["world_size"] == 1
    assert "cka_sim_version" in meta


def test_layer_that_does_not_run_is_named_in_the_error():
    encoder, rotated = related_pair()
    rotated.unused = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"layers_b: layer\(s\) \['unused'\] produced no output"):
        compare_models(encoder, rotated, batches(data(40), 20), layers_b=["unused"], progress=False)
    assert_no_hooks(rotated)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"estimator": "rbf"}, ValueError, r"estimator must be 'minibatch' or 'exact'; got 'rbf'"),
        ({"layers_a": ["erly"]}, ValueError, r"layers_a: Encoder has no module named 'erly'"),
        ({"layers_b": ["prj"]}, ValueError, r"layers_b: .*close matches: \['proj'\]"),
    ],
)
def test_compare_models_bad_arguments(kwargs, error, pattern):
    encoder, rotated = related_pair()
    with pytest.raises(error, match=pattern):
        compare_models(encoder, rotated, batches(data(40), 20), progress=False, **kwargs)


def test_compare_models_rejects_non_modules_and_empty_loaders():
    encoder, _ = related_pair()
    with pytest.raises(TypeError, match="model_b must be a torch.nn.Module"):
        compare_models(encoder, "resnet", [], progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loader yielded no batches"):
        compare_models(encoder, encoder, [], progress=False)


def test_progress_bar_is_shown(capsys):
    encoder, rotated = related_pair()
    compare_models(encoder, rotated, batches(data(40), 20), progress=True)
    assert "compare_models" in capsys.readouterr().err


def _distributed_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One gloo process: compare_models on its shard of the batches, results saved to out_dir."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        encoder, rotated = related_pair()
        shard = batches(data(160), 40)[rank::world_size]
        for estimator in ("exact", "minibatch"):
            result = compare_models(encoder, rotated, shard, estimator=estimator, progress=False)
            result.save(f"{out_dir}/{estimator}-{rank}.npz")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_reduce_equals_one_process_over_all_data(tmp_path):
    import torch.multiprocessing as mp

    from cka_sim import CKAResult

    mp.spawn(
        _distributed_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    encoder, rotated = related_pair()
    for estimator in ("exact", "minibatch"):
        single = compare_models(
            encoder, rotated, batches(data(160), 40), estimator=estimator, progress=False
        )
        for rank in range(2):
            reduced = CKAResult.load(tmp_path / f"{estimator}-{rank}.npz")
            assert reduced.n_examples == 160
            assert reduced.metadata["world_size"] == 2
            np.testing.assert_allclose(reduced.values, single.values, rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    encoder, rotated = related_pair()
    loader = batches(data(120), 40)
    cpu = compare_models(encoder, rotated, loader, estimator="exact", progress=False)
    gpu = compare_models(encoder, rotated, loader, estimator="exact", progress=False, device="cuda")
    assert gpu.metadata["device"].startswith("cuda")
    np.testing.assert_allclose(gpu.values, cpu.values, rtol=1e-9, atol=1e-12)
    mini_cpu = compare_models(encoder.cpu(), rotated.cpu(), loader, progress=False)
    mini_gpu = compare_models(encoder, rotated, loader, progress=False, device="cuda")
    np.testing.assert_allclose(mini_gpu.values, mini_cpu.values, rtol=1e-9, atol=1e-12)
