"""The model factory: every source and architecture family, label map, pad token, LoRA."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from llm_finetuning.models import (
    LoraParams,
    ModelParams,
    apply_lora,
    build_classifier,
    load_tokenizer,
    model_for_saving,
    parameter_counts,
)

DEMO_TOKENIZER = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "llm_finetuning"
    / "demo_data"
    / "tokenizer"
)
LABELS = ["negative", "neutral", "positive"]
ARCHITECTURES = {
    "gpt2": {
        "model_type": "gpt2",
        "n_layer": 1,
        "n_head": 2,
        "n_embd": 32,
        "n_positions": 64,
    },
    "llama": {
        "model_type": "llama",
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
    "bert": {
        "model_type": "bert",
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
}


def config_spec(architecture: dict) -> ModelParams:
    return ModelParams.model_validate(
        {
            "source": "config",
            "name_or_path": None,
            "tokenizer_name_or_path": str(DEMO_TOKENIZER),
            "architecture": architecture,
            "max_length": 64,
        }
    )


def padded_batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return tokenizer(texts, padding=True, return_tensors="pt")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(config_spec(ARCHITECTURES["gpt2"]))


@pytest.mark.parametrize("family", sorted(ARCHITECTURES))
def test_config_models_get_labels_pad_token_and_vocabulary(family, tokenizer):
    torch.manual_seed(0)
    model = build_classifier(config_spec(ARCHITECTURES[family]), tokenizer, LABELS)

    assert model.config.model_type == family
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    model.eval()
    # Padding must not change a prediction: decoder models pool the last real token.
    short, long = "a fine film", "a fine film, though far too long for its own good"
    alone = model(**padded_batch(tokenizer, [short])).logits
    beside_longer = model(**padded_batch(tokenizer, [short, long])).logits
    assert beside_longer.shape == (2, 3)
    assert torch.allclose(alone[0], beside_longer[0], atol=1e-5)


def test_local_folder_gets_a_new_head_for_other_labels(tmp_path, tokenizer):
    build_classifier(
        config_spec(ARCHITECTURES["gpt2"]), tokenizer, LABELS
    ).save_pretrained(tmp_path / "three_class")
    spec = ModelParams.model_validate(
        {
            "source": "local",
            "name_or_path": str(tmp_path / "three_class"),
            "tokenizer_name_or_path": str(DEMO_TOKENIZER),
        }
    )
    model = build_classifier(spec, tokenizer, ["neg", "pos"])
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.score.out_features == 2
    assert next(model.parameters()).dtype == torch.float32


def test_bad_sources_fail_clearly(tmp_path, tokenizer):
    missing = ModelParams.model_validate(
        {
            "source": "local",
            "name_or_path": str(tmp_path / "nowhere"),
            "tokenizer_name_or_path": "x",
        }
    )
    with pytest.raises(ValueError, match="is not a folder"):
        build_classifier(missing, tokenizer, LABELS)
    with pytest.raises(ValueError, match="needs a model_type"):
        build_classifier(config_spec({"n_layer": 1}), tokenizer, LABELS)
    with pytest.raises(ValueError, match="at least two distinct"):
        build_classifier(config_spec(ARCHITECTURES["gpt2"]), tokenizer, ["only"])
    small_vocabulary = {**ARCHITECTURES["gpt2"], "vocab_size": 100}
    with pytest.raises(
        ValueError, match="2000 tokens but the model has 100 embedding rows"
    ):
        build_classifier(config_spec(small_vocabulary), tokenizer, LABELS)


def write_tiny_llama_gguf(path: Path, vocab_size: int) -> dict[str, np.ndarray]:
    """A one-layer Llama in GGUF (float32 tensors, llama.cpp names); returns them."""
    hidden, feed_forward, heads, kv_heads = 32, 64, 2, 1
    rng = np.random.default_rng(0)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tensors = {
        "token_embd.weight": weight(vocab_size, hidden),
        "blk.0.attn_norm.weight": np.ones(hidden, np.float32),
        "blk.0.attn_q.weight": weight(hidden, hidden),
        "blk.0.attn_k.weight": weight(hidden * kv_heads // heads, hidden),
        "blk.0.attn_v.weight": weight(hidden * kv_heads // heads, hidden),
        "blk.0.attn_output.weight": weight(hidden, hidden),
        "blk.0.ffn_norm.weight": np.ones(hidden, np.float32),
        "blk.0.ffn_gate.weight": weight(feed_forward, hidden),
        "blk.0.ffn_up.weight": weight(feed_forward, hidden),
        "blk.0.ffn_down.weight": weight(hidden, feed_forward),
        "output_norm.weight": np.ones(hidden, np.float32),
    }
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10_000.0)
    writer.add_vocab_size(vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


def test_gguf_model_becomes_a_plain_model_the_trainer_accepts(tmp_path, tokenizer):
    tensors = write_tiny_llama_gguf(tmp_path / "tiny.gguf", vocab_size=len(tokenizer))
    spec = ModelParams.model_validate(
        {
            "source": "gguf",
            "name_or_path": str(tmp_path),
            "gguf_file": "tiny.gguf",
            "tokenizer_name_or_path": str(DEMO_TOKENIZER),
        }
    )
    model = build_classifier(spec, tokenizer, ["neg", "pos"])

    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.pad_token_id == tokenizer.pad_token_id
    embeddings = model.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(embeddings, tensors["token_embd.weight"])
    # The Trainer refuses a model still flagged as quantized; this one it takes.
    Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True
        ),
    )


def test_gguf_file_missing_is_named(tmp_path, tokenizer):
    spec = ModelParams.model_validate(
        {
            "source": "gguf",
            "name_or_path": str(tmp_path),
            "gguf_file": "model.Q4_1.gguf",
            "tokenizer_name_or_path": str(DEMO_TOKENIZER),
        }
    )
    with pytest.raises(ValueError, match=r"GGUF file '.*model.Q4_1.gguf' not found"):
        build_classifier(spec, tokenizer, LABELS)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_lora_trains_adapters_and_the_head_only(family, tokenizer):
    torch.manual_seed(0)
    model = build_classifier(config_spec(ARCHITECTURES[family]), tokenizer, LABELS)
    full = parameter_counts(model)
    wrapped = apply_lora(model, LoraParams(enabled=True, r=4, alpha=8))

    trainable = {name for name, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(
        "lora_" in name or "modules_to_save" in name for name in trainable
    )
    assert any("modules_to_save" in name for name in trainable)  # the head learns
    assert parameter_counts(wrapped)["trainable"] < full["total"] / 5


def test_merged_lora_model_predicts_like_the_adapter(tokenizer):
    torch.manual_seed(0)
    model = build_classifier(config_spec(ARCHITECTURES["gpt2"]), tokenizer, LABELS)
    wrapped = apply_lora(model, LoraParams(enabled=True, r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.normal_(std=0.1)
    wrapped.eval()
    batch = padded_batch(tokenizer, ["a fine film", "dull"])
    with torch.no_grad():
        expected = wrapped(**batch).logits
        merged = model_for_saving(wrapped, LoraParams(enabled=True, merge_on_save=True))
        assert type(merged).__name__ == "GPT2ForSequenceClassification"
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-5)


def test_lora_spec_rejects_unknown_keys_and_reads_single_names():
    with pytest.raises(
        ValueError, match=r"training\.lora\.rank: unknown key; allowed keys: alpha, "
    ):
        LoraParams.model_validate({"rank": 8})
    assert LoraParams.model_validate({"target_modules": "c_attn"}).target_modules == (
        "c_attn",
    )
    with pytest.raises(ValueError, match=r"training\.lora\.r: Input should be greater"):
        LoraParams.model_validate({"r": 0})


def test_parameter_counts_leave_out_embeddings(tokenizer):
    model = AutoModelForSequenceClassification.from_config(
        build_classifier(config_spec(ARCHITECTURES["gpt2"]), tokenizer, LABELS).config
    )
    counts = parameter_counts(model)
    embeddings = (
        model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    )
    assert counts["non_embedding"] == counts["total"] - embeddings
    assert counts["trainable"] == counts["total"]
