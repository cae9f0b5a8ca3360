"""Training on the synthetic splits: it learns, saves, reloads and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from safetensors.torch import load_file
from transformers import TrainerCallback, set_seed

from llm_finetuning.datasets import TextClassifierDataset
from llm_finetuning.models import ModelParams, build_classifier, load_tokenizer
from llm_finetuning.pipelines.training import checkpoints
from llm_finetuning.pipelines.training.nodes import (
    DynamicPaddingCollator,
    fit,
    plot_training_curve,
    resolve_precision,
    training_splits,
)

from .conftest import LABEL_NAMES


def mean_loss(model: torch.nn.Module, tokenizer, dataset) -> float:
    """Cross-entropy of ``model`` over ``dataset`` in padded batches of 16."""
    collate = DynamicPaddingCollator(tokenizer)
    features = dataset.select_columns(["input_ids", "attention_mask", "labels"])
    losses = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(features), 16):
            batch = collate(
                [features[i] for i in range(start, min(start + 16, len(features)))]
            )
            losses.append(model(**batch).loss.item())
    return float(np.mean(losses))


def logits_of(model: torch.nn.Module, tokenizer, dataset) -> torch.Tensor:
    """Logits of one right-padded batch of the whole ``dataset``."""
    batch = DynamicPaddingCollator(tokenizer)(
        [
            dataset.select_columns(["input_ids", "attention_mask"])[i]
            for i in range(len(dataset))
        ]
    )
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def test_fit_lowers_the_loss_and_reports_what_it_did(
    tokenized_reviews, model_params, training_params, runtime_params
):
    spec = ModelParams.model_validate(model_params)
    tokenizer = load_tokenizer(spec)
    set_seed(runtime_params["seed"])  # fit initialises the same way
    untrained = build_classifier(spec, tokenizer, LABEL_NAMES)
    before = mean_loss(untrained, tokenizer, tokenized_reviews["train"])

    params = training_params(max_steps=24, evaluation={"steps": 8})
    classifier, metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params
    )

    after = mean_loss(
        classifier.model, classifier.tokenizer, tokenized_reviews["train"]
    )
    assert after < 0.5 * before, (before, after)
    assert classifier.label_names == LABEL_NAMES
    assert classifier.model.config.id2label == {0: "negative", 1: "positive"}
    assert classifier.metadata["data"] == {"train": 96, "validation": 32}
    assert classifier.metadata["training"]["learning_rate"] == 2e-3

    assert metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert metrics["global_step"] == 24
    assert [e["step"] for e in metrics["history"]["train"]] == list(range(1, 25))
    assert [e["step"] for e in metrics["history"]["eval"]] == [8, 16, 24]
    assert {"eval_loss", "eval_accuracy", "eval_f1"} <= set(
        metrics["history"]["eval"][0]
    )
    assert metrics["best"]["metric"] == "eval_loss"
    throughput = metrics["throughput"]
    assert throughput["samples"] == 24 * 8
    assert throughput["real_tokens"] <= throughput["padded_tokens"]
    assert throughput["samples_per_second"] > 0
    assert (
        0 < throughput["train_cpu_seconds"] and throughput["samples_per_cpu_second"] > 0
    )
    assert 0 < throughput["mfu"] < 1
    json.dumps(metrics)  # the catalog saves it as JSON


def test_save_and_load_give_identical_predictions(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    classifier, _ = fit(
        tokenized_reviews, LABEL_NAMES, model_params, training_params(), runtime_params
    )
    dataset = TextClassifierDataset(path=str(tmp_path / "model"))
    dataset.save(classifier)
    loaded = dataset.load()

    test = tokenized_reviews["test"]
    assert torch.equal(
        logits_of(classifier.model, classifier.tokenizer, test),
        logits_of(loaded.model, loaded.tokenizer, test),
    )
    assert loaded.label_names == LABEL_NAMES
    assert loaded.metadata["label_names"] == LABEL_NAMES
    assert loaded.metadata["training_arguments"]["learning_rate"] == 2e-3
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_lora_trains_adapters_and_head_and_saves_a_merged_model(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    params = training_params(lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0})
    classifier, metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params
    )

    counts = metrics["parameters"]
    assert 0 < counts["trainable"] < counts["total"] / 5
    assert type(classifier.model).__name__ == "GPT2ForSequenceClassification"  # merged
    dataset = TextClassifierDataset(path=str(tmp_path / "model"))
    dataset.save(classifier)
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    loaded = dataset.load()
    test = tokenized_reviews["test"]
    assert torch.allclose(
        logits_of(classifier.model, classifier.tokenizer, test),
        logits_of(loaded.model, loaded.tokenizer, test),
    )


class _Crash(RuntimeError):
    """Stands in for a killed process."""


class CrashAfterCheckpoint(TrainerCallback):
    """Raises once the checkpoint of ``step`` is on disk, like a kill right after it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise _Crash(f"crashed after the checkpoint of step {state.global_step}")


def test_resume_auto_continues_from_the_last_checkpoint(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    params = training_params()
    with pytest.raises(_Crash):
        fit(
            tokenized_reviews,
            LABEL_NAMES,
            model_params,
            params,
            runtime_params,
            callbacks=[CrashAfterCheckpoint(step=4)],
        )
    checkpoint_dir = tmp_path / "checkpoints"
    assert (checkpoint_dir / "checkpoint-4" / "trainer_state.json").is_file()
    # A checkpoint cut short by the kill (no trainer_state.json yet) must be skipped.
    (checkpoint_dir / "checkpoint-6").mkdir()
    (checkpoint_dir / "checkpoint-6" / "model.safetensors").write_bytes(b"partial")

    resumed, resumed_metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params
    )
    assert resumed_metrics["resumed_from_step"] == 4
    assert resumed_metrics["global_step"] == 8
    assert resumed_metrics["throughput"]["samples"] == 4 * 8  # only steps 5-8 ran
    assert [e["step"] for e in resumed_metrics["history"]["train"]] == list(range(1, 9))
    assert not (checkpoint_dir / "checkpoint-6").exists()
    # Training alone does not end the run: its model is not saved yet.
    assert json.loads((checkpoint_dir / "run.json").read_text())["finished"] is False
    assert (checkpoint_dir / "checkpoint-8").is_dir()
    assert checkpoints.finish_saved_model(resumed.metadata) == checkpoint_dir
    assert json.loads((checkpoint_dir / "run.json").read_text())["finished"] is True
    assert not list(checkpoint_dir.glob("checkpoint-*"))  # deleted after the save

    # Resuming reproduces the uninterrupted run (same batches, RNG state restored).
    uninterrupted, metrics = fit(
        tokenized_reviews,
        LABEL_NAMES,
        model_params,
        training_params(checkpoints={"dir": str(tmp_path / "fresh")}),
        runtime_params,
    )
    assert metrics["resumed_from_step"] is None
    for name, weight in uninterrupted.model.state_dict().items():
        assert torch.allclose(weight, resumed.model.state_dict()[name], atol=1e-6), name
    checkpoints.finish_saved_model(uninterrupted.metadata)

    # A finished run is not resumed: the next run starts afresh.
    _, again = fit(tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params)
    assert again["resumed_from_step"] is None


def test_resume_in_a_later_epoch_reproduces_the_uninterrupted_run(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    """96 reviews in batches of 8: 12 steps an epoch; the crash comes in epoch 2.

    Each epoch's length-grouped order is drawn anew; the resumed process must draw
    the same order for the epoch it resumes in and every later one, and the same
    dropout masks, or its weights drift from the uninterrupted run's.
    """
    dropout = {"resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}
    model_params["architecture"].update(dropout)
    params = training_params(
        max_steps=30, evaluation={"steps": 10}, checkpoints={"every_n_steps": 4}
    )
    with pytest.raises(_Crash):
        fit(
            tokenized_reviews,
            LABEL_NAMES,
            model_params,
            params,
            runtime_params,
            callbacks=[CrashAfterCheckpoint(step=16)],
        )
    resumed, resumed_metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params
    )
    assert resumed_metrics["resumed_from_step"] == 16
    fresh = training_params(
        max_steps=30,
        evaluation={"steps": 10},
        checkpoints={"every_n_steps": 4, "dir": str(tmp_path / "fresh")},
    )
    uninterrupted, metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, fresh, runtime_params
    )
    assert [
        e["eval_loss"] for e in resumed_metrics["history"]["eval"]
    ] == pytest.approx([e["eval_loss"] for e in metrics["history"]["eval"]], abs=1e-6)
    for name, weight in uninterrupted.model.state_dict().items():
        assert torch.allclose(weight, resumed.model.state_dict()[name], atol=1e-6), name


def test_changed_parameters_start_afresh_instead_of_resuming(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    with pytest.raises(_Crash):
        fit(
            tokenized_reviews,
            LABEL_NAMES,
            model_params,
            training_params(),
            runtime_params,
            callbacks=[CrashAfterCheckpoint(step=4)],
        )
    _, metrics = fit(
        tokenized_reviews,
        LABEL_NAMES,
        model_params,
        training_params(learning_rate=1e-3),
        runtime_params,
    )
    assert metrics["resumed_from_step"] is None
    assert metrics["global_step"] == 8


class RecordWeights(TrainerCallback):
    """Keeps a copy of the weights after every optimizer step."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = {
            name: weight.detach().clone() for name, weight in model.state_dict().items()
        }


def test_early_stopping_stops_and_returns_the_best_model(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    # At this learning rate the weights move but no prediction flips: the accuracy of
    # the second evaluation only ties the first, which stays the best and stops the run.
    params = training_params(
        max_steps=40,
        learning_rate=1e-6,
        evaluation={"steps": 2, "metric": "accuracy", "early_stopping_patience": 1},
        checkpoints={"every_n_steps": 2, "keep_after_success": True},
    )
    weights = RecordWeights()
    classifier, metrics = fit(
        tokenized_reviews,
        LABEL_NAMES,
        model_params,
        params,
        runtime_params,
        callbacks=[weights],
    )

    assert metrics["global_step"] == 4
    assert metrics["best"]["metric"] == "eval_accuracy"
    assert metrics["best"]["step"] == 2
    state = classifier.model.state_dict()
    best = load_file(
        str(tmp_path / "checkpoints" / "checkpoint-2" / "model.safetensors")
    )
    assert all(torch.equal(state[name], weight) for name, weight in best.items())
    assert not all(torch.equal(state[name], weights.by_step[4][name]) for name in best)


def test_a_checkpoint_vetoed_by_an_evaluation_is_written_one_step_later(
    tmp_path, tokenized_reviews, model_params, training_params, runtime_params
):
    # Evaluations at 2 and 4; the one at 4 does not improve, so the Trainer's
    # best-only saving skips the periodic checkpoint due there: it must follow at 5.
    params = training_params(
        max_steps=6,
        learning_rate=1e-6,
        evaluation={"steps": 2, "metric": "accuracy"},
        checkpoints={"every_n_steps": 4, "keep_last": 5, "keep_after_success": True},
    )
    _, metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params
    )
    saved = sorted(
        int(p.name.split("-")[1])
        for p in (tmp_path / "checkpoints").glob("checkpoint-*")
    )
    assert metrics["best"]["step"] == 2
    assert saved == [2, 5]


def test_accumulation_and_gradient_checkpointing_without_evaluation(
    tokenized_reviews, model_params, training_params, runtime_params
):
    params = training_params(
        max_steps=2,
        gradient_accumulation_steps=2,
        gradient_checkpointing=True,
        group_by_length=False,
        lr_scheduler="cosine",
        warmup=0.5,
        evaluation={"strategy": "no"},
    )
    _, metrics = fit(
        tokenized_reviews, LABEL_NAMES, model_params, params, runtime_params
    )
    assert metrics["effective_batch_size"] == 16
    assert metrics["throughput"]["samples"] == 2 * 2 * 8
    assert metrics["history"]["eval"] == []
    assert metrics["best"]["value"] is None
    assert plot_training_curve(metrics) is not None  # no validation curve to draw


def test_training_splits_name_the_bad_rows(tokenized_reviews):
    bad_labels = tokenized_reviews["train"].map(
        lambda row, i: {"labels": 5 if i in (3, 7) else row["labels"]},
        with_indices=True,
    )
    with pytest.raises(
        ValueError, match=r"'train'.*'labels'.*2 row\(s\), first rows \[3, 7\]"
    ):
        training_splits(
            DatasetDict(train=bad_labels), LABEL_NAMES, needs_validation=False
        )

    with pytest.raises(ValueError, match=r"lacks the split\(s\) \['validation'\]"):
        training_splits(
            DatasetDict(train=tokenized_reviews["train"]),
            LABEL_NAMES,
            needs_validation=True,
        )

    no_mask = tokenized_reviews["validation"].remove_columns("attention_mask")
    with pytest.raises(
        ValueError, match=r"'validation'\] lacks the column\(s\) \['attention_mask'\]"
    ):
        training_splits(
            DatasetDict(train=tokenized_reviews["train"], validation=no_mask),
            LABEL_NAMES,
            needs_validation=True,
        )

    empty_row = tokenized_reviews["train"].map(
        lambda row, i: {"input_ids": [] if i == 2 else row["input_ids"]},
        with_indices=True,
    )
    with pytest.raises(ValueError, match=r"1 empty review\(s\).*\[2\]"):
        training_splits(
            DatasetDict(train=empty_row), LABEL_NAMES, needs_validation=False
        )


def test_training_splits_keep_model_columns_and_lengths(tokenized_reviews):
    shuffled = DatasetDict(
        train=tokenized_reviews["train"].shuffle(seed=1).select(range(10))
    )
    splits = training_splits(shuffled, LABEL_NAMES, needs_validation=False)
    train = splits["train"]
    assert train.column_names == ["input_ids", "attention_mask", "labels", "length"]
    assert train["length"] == [len(ids) for ids in shuffled["train"]["input_ids"]]


def test_precision_is_fp32_on_cpu_unless_forced():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU default")
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"


def test_plot_training_curve_draws_loss_and_validation(tmp_path):
    metrics = {
        "history": {
            "train": [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}],
            "eval": [
                {"step": 2, "eval_loss": 0.65, "eval_accuracy": 0.6, "eval_f1": 0.55}
            ],
        },
        "throughput": {
            "samples_per_second": 3.0,
            "real_tokens_per_second": 900.0,
            "mfu": None,
        },
    }
    figure = plot_training_curve(metrics)
    loss_axis, metric_axis = figure.axes
    assert [line.get_label() for line in loss_axis.get_lines()] == [
        "training",
        "validation",
    ]
    assert [line.get_label() for line in metric_axis.get_lines()] == ["accuracy", "f1"]
    figure.savefig(Path(tmp_path) / "curve.png")
