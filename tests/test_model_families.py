"""Models nobody here wrote, randomly initialised from configs (nothing is downloaded):
Hugging Face BERT and GPT-2 with padding, an LSTM, nn.MultiheadAttention, and (where they import)
torchvision's resnet18 and timm's ResNet and ViT.

The optional packages come from the ``models-test`` extra; a test whose package is missing, or
does not import beside this torch, is skipped with the reason.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cka_sim import linear_cka  # noqa: E402
from cka_sim.torch import compare_models, default_layers, layer_table, record_activations  # noqa: E402


def _optional(name: str):
    """Import ``name`` or skip, saying why (missing, or broken beside this torch)."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # a broken install raises RuntimeError, not only ImportError
        pytest.skip(
            f"{name} is not importable here ({type(err).__name__}: {err}); install the "
            "models-test extra"
        )


def _text_batches(seed: int, n_batches: int = 2, batch: int = 4, length: int = 9):
    """Dict batches of token ids and a right-padded attention mask."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, 90, (batch, length), generator=g)
        lengths = torch.randint(3, length + 1, (batch,), generator=g)
        mask = (torch.arange(length) < lengths[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


@pytest.fixture(scope="module")
def transformers_pair():
    transformers = _optional("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=100,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    ).double()
    gpt2 = transformers.GPT2Model(
        transformers.GPT2Config(vocab_size=100, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    ).double()
    return bert.eval(), gpt2.eval()  # no dropout in the by-hand reference either


def test_bert_against_gpt2_token_by_token_excludes_padding(transformers_pair):
    bert, gpt2 = transformers_pair
    batches = _text_batches(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the dict batch reaches both models whole
        result = compare_models(
            bert,
            gpt2,
            batches,
            layers_a=["encoder.layer.1"],
            layers_b=["h.1"],
            estimator="exact",
            samples="tokens",
            progress=False,
        )
    rows_a, rows_b = [], []
    for batch in batches:
        with (
            record_activations(bert, ["encoder.layer.1"]) as sa,
            record_activations(gpt2, ["h.1"]) as sb,
        ):
            bert(**batch)
            gpt2(**batch)
        keep = batch["attention_mask"].bool()
        rows_a.append(sa["encoder.layer.1"][keep])
        rows_b.append(sb["h.1"][keep])
    expected = linear_cka(torch.cat(rows_a).numpy(), torch.cat(rows_b).numpy(), debiased=True)
    assert abs(result.values[0, 0] - expected) < 1e-10
    assert result.n_examples == sum(int(b["attention_mask"].sum()) for b in batches)


def test_bert_default_layers_are_its_transformer_layers_and_pooler_output_is_selectable(
    transformers_pair,
):
    bert, _ = transformers_pair
    batches = _text_batches(1)
    assert default_layers(bert, batches[0]) == ["encoder.layer.0", "encoder.layer.1"]
    result = compare_models(
        bert,
        bert,
        batches,
        layers_a=[""],
        layers_b=["encoder.layer.1"],
        select={"": "pooler_output"},
        samples="examples",
        estimator="exact",
        debiased=False,
        progress=False,
    )
    assert result.n_examples == 8
    pooled = compare_models(
        bert, bert, batches, samples="pooled", pooling="first", estimator="exact", progress=False
    )
    assert pooled.row_names == ["encoder.layer.0", "encoder.layer.1"]
    assert abs(pooled.value("encoder.layer.1", "encoder.layer.1") - 1.0) < 1e-9


def test_gpt2_minibatch_and_layer_table(transformers_pair):
    _, gpt2 = transformers_pair
    batches = _text_batches(2, batch=6)
    result = compare_models(gpt2, gpt2, batches, samples="pooled", pooling="last", progress=False)
    assert result.row_names == ["h.0", "h.1"]
    table = layer_table(gpt2, batches[0], ["wte", "h.0"], samples="tokens")
    assert [info.width for info in table] == [16, 16]
    assert table[1].samples == int(batches[0]["attention_mask"].sum())
    assert "h.0" in str(table)


def test_lstm_and_multihead_attention_by_tokens():
    torch.manual_seed(0)

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 6, batch_first=True)
            self.attn = nn.MultiheadAttention(6, 2, batch_first=True)

        def forward(self, x, attention_mask=None):
            h, _ = self.lstm(x)
            pad = None if attention_mask is None else ~attention_mask.bool()
            out, _ = self.attn(h, h, h, key_padding_mask=pad)
            return out

    a, b = Recurrent().double().eval(), Recurrent().double().eval()
    g = torch.Generator().manual_seed(3)
    batches = [
        {
            "x": torch.randn(4, 7, 5, generator=g, dtype=torch.float64),
            "attention_mask": (torch.arange(7) >= torch.tensor([[0], [2], [3], [5]])).long(),
        }
        for _ in range(2)
    ]  # left padding
    result = compare_models(
        a,
        b,
        batches,
        layers_a=["lstm", "attn"],
        layers_b=["attn"],
        estimator="exact",
        samples="tokens",
        progress=False,
    )
    assert result.n_examples == sum(int(b["attention_mask"].sum()) for b in batches)
    assert np.all(np.isfinite(result.values))
    same = compare_models(
        a,
        a,
        batches,
        layers_a=["attn"],
        layers_b=["attn"],
        estimator="exact",
        samples="tokens",
        progress=False,
    )
    assert abs(same.values[0, 0] - 1.0) < 1e-12


def _image_pair(build):
    torch.manual_seed(0)
    a, b = build(), build()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return a, b, [x[:4], x[4:]]


def test_torchvision_resnet18_block_outputs_by_positions():
    models = _optional("torchvision.models")
    a, b, batches = _image_pair(lambda: models.resnet18(weights=None, num_classes=10))
    layers = default_layers(a)
    assert layers[:2] == ["layer1.0", "layer1.1"] and len(layers) == 8
    result = compare_models(
        a,
        b,
        batches,
        layers_a=["layer4.1"],
        layers_b=["layer4.1"],
        samples="positions",
        estimator="exact",
        progress=False,
    )
    assert result.n_examples == 8 * 1 * 1


def test_timm_resnet_and_vit_by_positions():
    timm = _optional("timm")
    resnet, _, batches = _image_pair(lambda: timm.create_model("resnet18", pretrained=False))
    torch.manual_seed(1)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
    assert default_layers(vit)[-2:] == ["blocks.0", "blocks.1"]
    as_map = lambda out: out[:, 1:].transpose(1, 2).unflatten(2, (2, 2))  # noqa: E731
    result = compare_models(
        resnet,
        vit,
        batches,
        layers_a=["layer3.1"],
        layers_b=["blocks.1"],
        select=(None, {"blocks.1": as_map}),
        samples="positions",
        grid=2,
        estimator="exact",
        progress=False,
    )
    assert result.n_examples == 8 * 4
