"""CLIP's byte-level BPE tokenizer (Radford et al., 2021), giving the same ids as open_clip's
``SimpleTokenizer`` / ``open_clip.tokenize`` (open_clip 3.3.0), so that pretrained CLIP text
towers converted by ``python -m xmodal.convert open_clip`` read the ids they were trained on.

    tok = ClipBPETokenizer("bpe_simple_vocab_16e6.txt.gz")      # context_length=77
    tok.encode("a photo of a cat")   # int32 [77]: 49406, 320, 1125, 539, 320, 2368, 49407, 0...

The steps, as open_clip does them:

1. clean: ``ftfy.fix_text``, ``html.unescape`` twice, strip, collapse whitespace runs to one
   space (``str.split``), lowercase;
2. split into words with open_clip's pattern (``regex`` module, for ``\\p{L}`` / ``\\p{N}``):
   the two special tokens, English contractions, letter runs, single digits, runs of other
   non-space characters;
3. map each word's UTF-8 bytes to printable characters (GPT-2's ``bytes_to_unicode``), mark
   the last one with ``</w>``, and merge adjacent pairs by BPE, lowest merge rank first;
4. ids = ``[49406 (start)] + tokens + [49407 (end)]``, zero-padded to ``context_length``; a
   longer text is cut to ``context_length`` ids whose last one is replaced by the end token.

Vocabulary (49408 ids): 256 byte characters, the same 256 with ``</w>``, the first
48894 merges of the gz file (lines 1 .. 49152-256-2 after its header line), then the start and
end tokens. Unlike xmodal's ByteTokenizer, id 0 is a real token ("!"), not only padding, so a
text tower reading these ids must not treat id 0 as padding (``TextTransformer(pad_mask=False,
causal=True, pool="argmax")``, as converted open_clip models are built).

The BPE merge loop is hand-written, as open_clip's own is (no tokenizers library): it is short,
and an exact copy of open_clip's behaviour matters more than speed. Words are cached.
"""
from __future__ import annotations

import functools
import gzip
import html
import os
from typing import Sequence

import numpy as np

START_TOKEN = "<start_of_text>"
END_TOKEN = "<end_of_text>"
END_OF_WORD = "</w>"
PAD_ID = 0
# open_clip reads the merges after the header line up to this many vocabulary entries in all
# (49152 minus the 256 byte symbols minus the 2 special tokens).
NUM_MERGES = 49152 - 256 - 2
# open_clip's word pattern (case-insensitive, so "'S" is a contraction too).
WORD_PATTERN = (START_TOKEN + "|" + END_TOKEN +
                r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Every byte 0..255 -> a printable character: the printable Latin-1 bytes map to
    themselves, the others (control characters, space, ...) to chr(256 + n) in byte order, so a
    BPE symbol never contains whitespace or control characters."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # Insertion order (printable bytes first, then the rest) is the vocabulary's order.
    return table


def clean(text: str) -> str:
    """open_clip's default 'lower' cleaning: fix mojibake, unescape HTML twice, collapse
    whitespace, lowercase."""
    import ftfy      # here, not at the top: registry discovery imports this module in every run
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


def read_merges(vocab_path: str) -> list[tuple[str, str]]:
    """The BPE merge pairs of a CLIP ``bpe_simple_vocab_16e6.txt.gz``, in rank order."""
    if not os.path.isfile(vocab_path):
        raise FileNotFoundError(f"CLIP BPE vocabulary {vocab_path!r} does not exist (open_clip "
                                "ships it as bpe_simple_vocab_16e6.txt.gz)")
    try:
        with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {vocab_path!r} as a gzipped CLIP BPE vocabulary ({e})")
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{vocab_path!r} is not a CLIP BPE vocabulary: expected {NUM_MERGES} "
                         "merge lines of two symbols after the header")
    return merges


class ClipBPETokenizer:
    """Text -> fixed-length int32 ids of CLIP's BPE vocabulary (see the module docstring).

    Same interface as ``xmodal.data.tokenizer.ByteTokenizer``: ``max_len``, ``vocab_size``,
    ``pad_id`` / ``bos_id`` / ``eos_id``, ``encode``, ``encode_batch``, ``decode``.
    """

    pad_id = PAD_ID

    def __init__(self, vocab_path: str, context_length: int = 77):
        if not isinstance(context_length, int) or context_length < 2:
            raise ValueError(f"ClipBPETokenizer context_length must be an int >= 2 (room for "
                             f"the start and end tokens), got {context_length!r}")
        self.vocab_path = vocab_path
        self.max_len = context_length
        self.byte_to_char = bytes_to_unicode()
        self.char_to_byte = {c: b for b, c in self.byte_to_char.items()}
        merges = read_merges(vocab_path)
        symbols = list(self.byte_to_char.values())
        symbols += [s + END_OF_WORD for s in symbols]
        symbols += ["".join(pair) for pair in merges]
        symbols += [START_TOKEN, END_TOKEN]
        self.symbol_to_id = {s: i for i, s in enumerate(symbols)}
        self.id_to_symbol = symbols
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.vocab_size = len(symbols)                       # 49408
        self.bos_id = self.symbol_to_id[START_TOKEN]         # 49406
        self.eos_id = self.symbol_to_id[END_TOKEN]           # 49407
        import regex     # as ftfy above
        self.word_pattern = regex.compile(WORD_PATTERN, regex.IGNORECASE)
        # A special token found in the text stays one symbol, as in open_clip.
        self.cache: dict[str, list[str]] = {START_TOKEN: [START_TOKEN], END_TOKEN: [END_TOKEN]}

    def __repr__(self) -> str:
        return f"ClipBPETokenizer({self.vocab_path!r}, context_length={self.max_len})"

    def bpe(self, word: str) -> list[str]:
        """One word (already in byte characters) -> its BPE symbols, the last with ``</w>``."""
        if word in self.cache:
            return self.cache[word]
        symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
        while len(symbols) > 1:
            # The adjacent pair merged earliest in training; stop when no pair has a merge.
            pairs = set(zip(symbols, symbols[1:]))
            best = min(pairs, key=lambda p: self.merge_rank.get(p, NUM_MERGES))
            if best not in self.merge_rank:
                break
            # Merge every occurrence of the pair, left to right, without overlaps.
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self.cache[word] = symbols
        return symbols

    def tokens(self, text: str | bytes) -> list[int]:
        """BPE ids of ``text``, without start/end tokens, padding or truncation. Bytes (data
        sets store text as UTF-8 bytes) are decoded first, like ByteTokenizer accepts them."""
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise TypeError(f"ClipBPETokenizer.encode takes str or bytes, got "
                            f"{type(text).__name__}")
        ids = []
        for word in self.word_pattern.findall(clean(text)):
            chars = "".join(self.byte_to_char[b] for b in word.encode("utf-8"))
            ids.extend(self.symbol_to_id[s] for s in self.bpe(chars))
        return ids

    def encode(self, text: str | bytes) -> np.ndarray:
        """``text`` -> int32 [max_len]: start, tokens, end, zero padding; a too-long text keeps
        its first ``max_len - 1`` ids and ends with the end token."""
        ids = [self.bos_id] + self.tokens(text) + [self.eos_id]
        if len(ids) > self.max_len:
            ids = ids[:self.max_len - 1] + [self.eos_id]
        out = np.full(self.max_len, PAD_ID, dtype=np.int32)
        out[:len(ids)] = ids
        return out

    def encode_batch(self, texts: Sequence[str | bytes]) -> np.ndarray:
        """list of N texts -> int32 [N, max_len]."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("ClipBPETokenizer.encode_batch takes a list of texts; use encode "
                            "for one")
        if not len(texts):
            return np.zeros((0, self.max_len), dtype=np.int32)
        return np.stack([self.encode(t) for t in texts])

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> cleaned (lowercased) text: the ids after a leading start token up to the first
        end token; padding after the end token is dropped, words are joined by one space.

        Since id 0 is also "!", ids without an end token are decoded as they are.
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ClipBPETokenizer.decode got ids outside [0, {self.vocab_size}): "
                             f"min {ids.min()}, max {ids.max()}")
        ids = ids.tolist()
        if ids and ids[0] == self.bos_id:
            ids = ids[1:]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        symbols = "".join(self.id_to_symbol[i] for i in ids
                          if i not in (self.bos_id, self.eos_id))
        # "</w>" is plain ASCII, so it survives the byte mapping and marks the word ends.
        text = bytes(self.char_to_byte[c] for c in symbols).decode("utf-8", errors="replace")
        return " ".join(text.replace(END_OF_WORD, " ").split())
