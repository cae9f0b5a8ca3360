# %% [markdown]
# # Explore the reviews before fine-tuning
#
# What the data looks like through the project's own catalog and nodes, so what you
# see here is what the pipelines will see: label balance, review lengths in words and
# in the model's tokens (what `model.max_length` truncates), duplicates and train/test
# overlap, and a few examples.
#
# Cells in the `# %%` format: open it in VS Code, JupyterLab (jupytext) or PyCharm, or
# run it whole from the project root:
#
#     python notebooks/explore_reviews.py               # the demo corpus, offline
#     KEDRO_ENV=local python notebooks/explore_reviews.py   # your own raw_reviews
#
# On Databricks, import it as a notebook (the `databricks` env reads the volume).

# %%
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # run as a script: write figures instead of showing them

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from llm_finetuning.models import ModelParams, load_tokenizer
from llm_finetuning.pipelines.data_processing.nodes import load_raw_splits

ENV = os.environ.get("KEDRO_ENV", "demo")
PROJECT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = PROJECT / "data" / "08_reporting" / "exploration"

bootstrap_project(PROJECT)
session = KedroSession.create(project_path=PROJECT, env=ENV)
context = session.load_context()
catalog = context.catalog
params = context.params
print(f"env {ENV}: raw_reviews is {type(catalog.get('raw_reviews')).__name__}")

# %% [markdown]
# ## The raw splits, as the pipeline reads them
# `load_raw_splits` is the data_processing pipeline's first node: it renames your
# columns to `text` and `label` and picks the configured train and test splits.

# %%
splits = load_raw_splits(catalog.load("raw_reviews"), params["data_processing"]["source"])
frames = {name: split.frame for name, split in splits.items()}
for name, frame in frames.items():
    print(f"{name}: {len(frame):,} reviews from {splits[name].source}")
frames["train"].head()

# %% [markdown]
# ## Labels: is the task balanced?

# %%
balance = pd.DataFrame(
    {name: frame["label"].value_counts(normalize=True) for name, frame in frames.items()}
).round(3)
print(balance)

# %% [markdown]
# ## Lengths in words and in the model's tokens
# Tokens are what the model pays for and what `model.max_length` truncates. The
# training collator pads each batch to its longest review, so the tail matters more
# than the mean: a few very long reviews make their whole batch long.

# %%
spec = ModelParams.model_validate(params["model"])
tokenizer = load_tokenizer(spec)
train = frames["train"].copy()
train["words"] = train["text"].str.split().str.len()
train["tokens"] = [
    len(ids) for ids in tokenizer(train["text"].tolist(), truncation=False)["input_ids"]
]
quantiles = train[["words", "tokens"]].quantile([0.5, 0.9, 0.99]).round(0)
print(quantiles)
print(
    f"{(train['tokens'] > spec.max_length).mean():.1%} of train reviews are longer than "
    f"model.max_length = {spec.max_length} tokens and get truncated"
)

figure, axis = plt.subplots(figsize=(8, 4))
axis.hist(train["tokens"], bins=50)
axis.axvline(spec.max_length, color="red", linestyle="--", label="model.max_length")
axis.set(xlabel="tokens per review", ylabel="reviews", title="Train review lengths")
axis.legend()
FIGURES.mkdir(parents=True, exist_ok=True)
figure.savefig(FIGURES / "token_lengths.png", dpi=100)

# %% [markdown]
# ## Does length say anything about the label?
# If it did, a model could learn length instead of sentiment.

# %%
print(train.groupby("label")["tokens"].describe()[["mean", "50%", "max"]].round(0))

# %% [markdown]
# ## Duplicates and train/test overlap
# validate_and_clean removes both; here is how many there are in the raw data.

# %%
duplicates = int(train["text"].duplicated().sum())
print(f"exact duplicates within train: {duplicates}")
if "test" in frames:
    overlap = np.intersect1d(train["text"].unique(), frames["test"]["text"].unique())
    print(f"train reviews that also appear in test: {len(overlap)}")

# %% [markdown]
# ## A few examples of each label

# %%
for label, group in train.groupby("label"):
    print(f"--- label {label!r}")
    for text in group.sample(2, random_state=0)["text"]:
        print(text[:300].replace("<br />", " "), "...\n")

# %% [markdown]
# ## After data_processing
# With `kedro run --pipelines data_processing --env <env>` done, its quality report
# says what was removed and why.

# %%
if catalog.exists("data_quality_report"):
    report = catalog.load("data_quality_report")
    splits = report.get("splits", {})
    print({split: splits[split].get("removed") for split in ("train", "test") if split in splits})
    print("warnings:", report.get("warnings", []))
else:
    print("no data_quality_report yet: run the data_processing pipeline first")

session.close()
