"""Tokenizers for ``ramnet train --task lm``: any ``transformers.AutoTokenizer`` (a local path or a name), or
``"byte"``, a byte-level tokenizer built locally (no download): ids 0-255 are the UTF-8 bytes, 256 is
``<|endoftext|>``, so the vocabulary has 257 entries. Both are ``transformers`` tokenizers, saved with
``save_pretrained`` next to the model and read back with ``AutoTokenizer.from_pretrained``."""
from __future__ import annotations

BYTE = "byte"
EOS_TEXT = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters (the ByteLevel alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast`` whose token id is the byte value (0-255), plus ``<|endoftext|>`` = 256."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = _bytes_to_unicode()
    core = Tokenizer(models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS_TEXT)


def load_tokenizer(name_or_path: str):
    """``"byte"`` -> :func:`byte_tokenizer`; anything else -> ``AutoTokenizer.from_pretrained`` (a directory, or
    a name when online). A tokenizer that cannot be loaded is a ``ValueError`` naming ``--tokenizer``."""
    if name_or_path == BYTE:
        return byte_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError, KeyError) as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ValueError(f"--tokenizer {name_or_path!r} cannot be loaded (a local directory, a name when online, "
                         f"or 'byte'): {first}") from None


def vocab_size(tokenizer) -> int:
    """The number of ids the tokenizer can produce, added tokens included (the model's ``vocab_size``)."""
    return len(tokenizer)
