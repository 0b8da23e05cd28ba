"""UTF-8 byte tokenizer, as in ByT5 (Xue et al., 2022, "ByT5: Towards a token-free future with
pre-trained byte-to-byte models").

Every string in every script is a sequence of UTF-8 bytes, so the vocabulary is fixed at
256 bytes + 3 specials: nothing to download and nothing fitted to a training split, which keeps
multilingual captions (Thai, Arabic, Chinese, ...) on an equal footing with English.

    ids:  0 = pad, 1 = bos, 2 = eos, byte b -> b + 3        (vocab_size = 259)
    encode(text) = [bos, b_1 + 3, ..., b_k + 3, eos, pad, ..., pad]   (length max_len)

Too-long text loses its trailing bytes, never the eos: the text tower may pool at the eos
position, so it must always be present.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
BYTE_OFFSET = 3


class ByteTokenizer:
    """Maps text to fixed-length int32 id arrays of UTF-8 bytes (see module docstring)."""

    vocab_size = 256 + BYTE_OFFSET
    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    def __init__(self, max_len: int):
        if not isinstance(max_len, int) or max_len < 2:
            raise ValueError(
                f"ByteTokenizer max_len must be an int >= 2 (room for bos and eos), got {max_len!r}")
        self.max_len = max_len

    def __repr__(self) -> str:
        return f"ByteTokenizer(max_len={self.max_len})"

    def encode(self, text: str | bytes) -> np.ndarray:
        """``text`` (str, or bytes already UTF-8 encoded) -> int32 [max_len]."""
        if isinstance(text, str):
            data = text.encode("utf-8")
        elif isinstance(text, (bytes, bytearray)):
            data = bytes(text)
        else:
            raise TypeError(f"ByteTokenizer.encode takes str or bytes, got {type(text).__name__}")
        body = np.frombuffer(data[: self.max_len - 2], dtype=np.uint8).astype(np.int32)
        ids = np.full(self.max_len, PAD_ID, dtype=np.int32)
        ids[0] = BOS_ID
        ids[1:1 + body.size] = body + BYTE_OFFSET
        ids[1 + body.size] = EOS_ID
        return ids

    def encode_batch(self, texts: Sequence[str | bytes]) -> np.ndarray:
        """list of N texts -> int32 [N, max_len]."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("ByteTokenizer.encode_batch takes a list of texts; use encode for one")
        if not texts:
            return np.zeros((0, self.max_len), dtype=np.int32)
        return np.stack([self.encode(t) for t in texts])

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text: bytes between bos and the first eos; pad and specials are dropped.

        Truncation can cut a multi-byte character in half; those bytes decode to U+FFFD
        (errors="replace") instead of raising.
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"ByteTokenizer.decode got ids outside [0, {self.vocab_size}): "
                f"min {ids.min()}, max {ids.max()}")
        eos = np.flatnonzero(ids == EOS_ID)
        if eos.size:
            ids = ids[: eos[0]]
        data = bytes((ids[ids >= BYTE_OFFSET] - BYTE_OFFSET).astype(np.uint8).tolist())
        return data.decode("utf-8", errors="replace")


class WordTokenizer:
    """Maps text to fixed-length int32 ids of a closed word vocabulary (lower-cased words and
    '?'), for text generated from one (a dataset's templates, names and phrases): one id per
    word, so a recurrent text encoder runs a few steps instead of a step per byte.

        ids:  0 = pad, 1 = unknown word, vocabulary[i] -> i + 2      (no bos/eos)

    A word outside the vocabulary (a held-out unit's name) is ``unknown``: the model must
    answer from something else. Too-long text loses its trailing words.
    """

    pad_id = PAD_ID
    unk_id = 1
    OFFSET = 2

    def __init__(self, vocabulary: Sequence[str], max_len: int):
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"WordTokenizer max_len must be an int >= 1, got {max_len!r}")
        words = list(dict.fromkeys(vocabulary))
        bad = [w for w in words if words_of(w) != [w]]
        if bad:
            raise ValueError(f"WordTokenizer vocabulary entries must be single lower-case "
                             f"words, got {bad[:3]}")
        self.vocabulary, self.max_len = words, max_len
        self._ids = {w: i + self.OFFSET for i, w in enumerate(words)}
        self.vocab_size = len(words) + self.OFFSET

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self.vocabulary)} words, max_len={self.max_len})"

    def encode(self, text: str | bytes) -> np.ndarray:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        ids = [self._ids.get(w, self.unk_id) for w in words_of(text)][: self.max_len]
        out = np.full(self.max_len, PAD_ID, np.int32)
        out[:len(ids)] = ids
        return out

    def encode_batch(self, texts: Sequence[str | bytes]) -> np.ndarray:
        if isinstance(texts, (str, bytes)):
            raise TypeError("WordTokenizer.encode_batch takes a list of texts; use encode")
        return (np.stack([self.encode(t) for t in texts]) if len(texts)
                else np.zeros((0, self.max_len), np.int32))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        words = []
        for i in np.asarray(ids).reshape(-1):
            if i == PAD_ID:
                continue
            words.append("<unk>" if i == self.unk_id else self.vocabulary[int(i) - self.OFFSET])
        return " ".join(words)


def words_of(text: str) -> list[str]:
    """Lower-case words (letters, digits, apostrophes, hyphens) and question marks."""
    import re
    return re.findall(r"[a-z0-9'\-]+|\?", text.lower())
