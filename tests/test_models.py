"""Tests of vae_zoo.models: layer names, shapes, kernel sizes, decoding modes, seeding, input
checks."""

from __future__ import annotations

import pytest
import torch

from vae_zoo.models import (
    DECODER_LAYERS,
    ENCODER_LAYERS,
    LAYER_NAMES,
    LEGACY_ENCODER_KERNELS,
    PAPER_ENCODER_KERNELS,
    ConvVAE,
    DatasetMismatchError,
    ModelConfig,
    check_images_fit,
    make_model,
)


def capture(model: torch.nn.Module, x: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
    """Outputs of every named layer, captured by forward hooks on the named modules."""
    modules = dict(model.named_modules())
    acts: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: acts.__setitem__(name, out.detach())
        )
        for name in LAYER_NAMES
    ]
    try:
        out = model(x, **kwargs)
    finally:
        for h in handles:
            h.remove()
    acts["_out"] = out
    return acts


def test_layer_names_are_the_papers_order():
    assert LAYER_NAMES == (
        "input",
        "encoder.conv1",
        "encoder.conv2",
        "encoder.conv3",
        "encoder.conv4",
        "encoder.dense",
        "encoder.mu",
        "encoder.logvar",
        "z",
        "decoder.dense1",
        "decoder.dense2",
        "decoder.deconv1",
        "decoder.deconv2",
        "decoder.deconv3",
        "decoder.deconv4",
        "output",
    )
    assert ENCODER_LAYERS[0] == "input" and DECODER_LAYERS[-1] == "output"
    assert ConvVAE.layer_names() == LAYER_NAMES


@pytest.mark.parametrize("kernels", [PAPER_ENCODER_KERNELS, LEGACY_ENCODER_KERNELS, (6, 2, 4, 2)])
@pytest.mark.parametrize(("size", "flat", "side"), [(64, 1024, 4), (32, 256, 2)])
def test_every_layer_is_captured_with_the_documented_shape(size, flat, side, kernels):
    model = make_model(channels=3, size=size, latent_dim=7, seed=0, encoder_kernels=kernels)
    x = torch.rand(5, 3, size, size)
    acts = capture(model, x)
    s = size
    expected = {
        "input": (5, 3, s, s),
        "encoder.conv1": (5, 32, s // 2, s // 2),
        "encoder.conv2": (5, 32, s // 4, s // 4),
        "encoder.conv3": (5, 64, s // 8, s // 8),
        "encoder.conv4": (5, 64, side, side),
        "encoder.dense": (5, 256),
        "encoder.mu": (5, 7),
        "encoder.logvar": (5, 7),
        "z": (5, 7),
        "decoder.dense1": (5, 256),
        "decoder.dense2": (5, flat),
        "decoder.deconv1": (5, 64, s // 8, s // 8),
        "decoder.deconv2": (5, 32, s // 4, s // 4),
        "decoder.deconv3": (5, 32, s // 2, s // 2),
        "decoder.deconv4": (5, 3, s, s),
        "output": (5, 3, s, s),
    }
    assert {k: tuple(v.shape) for k, v in acts.items() if k != "_out"} == expected
    assert model.encoder.dense.in_features == flat
    out = acts["_out"]
    torch.testing.assert_close(acts["input"], x)
    torch.testing.assert_close(acts["z"], out.z)
    torch.testing.assert_close(acts["encoder.mu"], out.mu)
    torch.testing.assert_close(acts["decoder.deconv4"], out.logits)
    torch.testing.assert_close(acts["output"], torch.sigmoid(out.logits))


def test_hooked_hidden_layers_are_post_relu():
    model = make_model(1, 32, seed=1)
    with torch.no_grad():  # logits mostly negative: a ReLU on them would show as min == 0
        model.decoder.deconv4.bias.fill_(-1.0)
    acts = capture(model, torch.rand(8, 1, 32, 32))
    relu_layers = [n for n in LAYER_NAMES if "conv" in n or "dense" in n]
    relu_layers.remove("decoder.deconv4")
    for name in relu_layers:
        assert acts[name].min() >= 0, name
    assert acts["decoder.deconv4"].min() < 0  # logits are not rectified
    assert acts["encoder.mu"].min() < 0


def test_decode_from_mean_is_deterministic_and_sample_is_seeded():
    model = make_model(1, 32, seed=0)
    x = torch.rand(4, 1, 32, 32)
    a, b = model(x, decode_from="mean"), model(x, decode_from="mean")
    torch.testing.assert_close(a.z, a.mu, rtol=0, atol=0)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    s1 = model(x, generator=torch.Generator().manual_seed(3))
    s2 = model(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1.z, s2.z)
    assert not torch.allclose(s1.z, s1.mu)
    # z = mu + sigma * eps with eps from the generator
    eps = torch.randn(s1.mu.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s1.z, s1.mu + torch.exp(0.5 * s1.logvar) * eps)
    mean_model = make_model(1, 32, seed=0, decode_from="mean")
    torch.testing.assert_close(mean_model(x).logits, a.logits, rtol=0, atol=0)


def test_make_model_seed_is_reproducible_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = make_model(1, 64, seed=5), make_model(1, 64, seed=5), make_model(1, 64, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name


def test_wrong_input_shape_and_unsupported_size_are_clear_errors():
    model = make_model(1, 64, seed=0)
    with pytest.raises(ValueError, match=r"expects images of shape \(n, 1, 64, 64\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="supports image sizes"):
        ConvVAE(1, 28)
    with pytest.raises(ValueError, match="decode_from"):
        ConvVAE(1, 32, decode_from="median")


def test_check_images_fit_names_the_mismatch():
    config = ModelConfig(channels=1, size=32)
    check_images_fit(config, 1, 32)
    with pytest.raises(DatasetMismatchError, match="3-channel images .* takes 1-channel"):
        check_images_fit(config, 3, 32, dataset="shapes3d")
    with pytest.raises(DatasetMismatchError, match="64 px images .* size=32"):
        check_images_fit(config, 1, 64)


def test_config_and_decoder_mode_checks_name_the_argument():
    with pytest.raises(ValueError, match="latent_dim must be at least 1; got 0"):
        ModelConfig(channels=1, size=32, latent_dim=0)
    with pytest.raises(TypeError, match="channels must be an integer"):
        ModelConfig(channels=1.5, size=32)
    with pytest.raises(ValueError, match="unknown decode_from 'median': decode_from must be"):
        ConvVAE(1, 32, decode_from="median")


def test_the_encoder_uses_the_papers_kernels_by_default():
    model = make_model(1, 32, seed=0)
    assert model.config.encoder_kernels == PAPER_ENCODER_KERNELS == (4, 4, 2, 2)
    convs = [model.encoder.conv1, model.encoder.conv2, model.encoder.conv3, model.encoder.conv4]
    assert [c.kernel_size for c in convs] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    assert [c.stride for c in convs] == [(2, 2)] * 4
    assert [c.padding for c in convs] == [(1, 1), (1, 1), (0, 0), (0, 0)]
    legacy = make_model(1, 32, seed=0, encoder_kernels=LEGACY_ENCODER_KERNELS)
    assert legacy.encoder.conv3.kernel_size == (4, 4) and legacy.encoder.conv4.padding == (1, 1)


@pytest.mark.parametrize(
    ("size", "kernels", "encoder", "total"),
    [
        (32, (4, 4, 2, 2), 112_596, 296_533),
        (32, (4, 4, 4, 4), 186_324, 370_261),
        (64, (4, 4, 2, 2), 309_204, 690_517),
        (64, (4, 4, 4, 4), 382_932, 764_245),
    ],
)
def test_parameter_counts(size, kernels, encoder, total):
    """Conv: c_in·c_out·k² + c_out; dense: n_in·n_out + n_out (one channel, d = 10)."""
    k1, k2, k3, k4 = kernels
    convs = 1 * 32 * k1**2 + 32 + 32 * 32 * k2**2 + 32 + 32 * 64 * k3**2 + 64 + 64 * 64 * k4**2 + 64
    flat = 64 * (size // 16) ** 2
    assert convs + flat * 256 + 256 + 2 * (256 * 10 + 10) == encoder  # the formula, by hand
    model = make_model(1, size, seed=0, encoder_kernels=kernels)
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder
    assert sum(p.numel() for p in model.parameters()) == total


def test_model_config_records_and_reads_back_the_kernels():
    config = ModelConfig(channels=1, size=32)
    assert config.to_dict() == {
        "channels": 1,
        "size": 32,
        "latent_dim": 10,
        "encoder_kernels": [4, 4, 2, 2],
    }
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig(1, 32, 10, [4, 4, 4, 4]).encoder_kernels == (4, 4, 4, 4)  # a JSON list
    # a dict without the field (a checkpoint of the code before it) is the old architecture
    old = ModelConfig.from_dict({"channels": 1, "size": 32, "latent_dim": 10})
    assert old.encoder_kernels == LEGACY_ENCODER_KERNELS == (4, 4, 4, 4)
    assert old != config and "encoder_kernels=(4, 4, 4, 4)" in old.describe()
    built = ConvVAE.from_config({"channels": 1, "size": 32, "latent_dim": 10})
    assert built.config == old and built.encoder.conv3.kernel_size == (4, 4)
    assert ConvVAE.from_config(config.to_dict()).encoder.conv3.kernel_size == (2, 2)


@pytest.mark.parametrize("kernels", [(4, 4, 3, 2), (4, 4, 2), (4, 4, 2, 0), (4, 4, 2, 2.0), "4422"])
def test_invalid_encoder_kernels_are_a_clear_error(kernels):
    with pytest.raises(
        ValueError, match="encoder_kernels must be four even integers of at least 2"
    ):
        ModelConfig(channels=1, size=32, encoder_kernels=kernels)
    with pytest.raises(ValueError, match="encoder_kernels must be four even integers"):
        make_model(1, 32, encoder_kernels=kernels)
