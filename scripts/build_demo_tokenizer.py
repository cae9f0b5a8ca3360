"""Train the offline demo's tokenizer on the bundled corpus (run once; output committed).

A byte-level BPE like GPT-2's, so the demo exercises the same code path (no pad token,
EOS as pad) without downloading anything. Usage::

    python scripts/build_demo_tokenizer.py
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

DEMO_DATA = Path(__file__).resolve().parents[1] / "src" / "llm_finetuning" / "demo_data"
END_OF_TEXT = "<|endoftext|>"
VOCAB_SIZE = 2_000


def corpus_texts() -> list[str]:
    """All review texts of the bundled train and test files."""
    texts = []
    for name in ("train.jsonl", "test.jsonl"):
        with (DEMO_DATA / name).open(encoding="utf-8") as lines:
            texts.extend(json.loads(line)["review"] for line in lines if line.strip())
    return texts


def train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with GPT-2's special-token convention."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=1024,
    )


if __name__ == "__main__":
    tokenizer = train_tokenizer(corpus_texts())
    tokenizer.save_pretrained(DEMO_DATA / "tokenizer")
    print(f"saved a {len(tokenizer)}-token tokenizer to {DEMO_DATA / 'tokenizer'}")
