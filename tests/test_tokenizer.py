import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer

TEXTS = {
    "english": "grinning face",
    "thai": "หน้ายิ้ม",
    "chinese": "嘿嘿",
    "arabic": "وجه بابتسامة عريضة",
    "russian": "широко улыбается",
    "emoji": "😀👍🏽🇺🇸",
}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_round_trip(text):
    tok = ByteTokenizer(max_len=64)
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (64,)
    assert tok.decode(ids) == text


def test_layout_matches_utf8_bytes():
    ids = ByteTokenizer(max_len=8).encode("aé")  # 'a' = 0x61, 'é' = 0xC3 0xA9
    np.testing.assert_array_equal(ids, [1, 0x61 + 3, 0xC3 + 3, 0xA9 + 3, 2, 0, 0, 0])


def test_vocab_size_covers_all_bytes():
    tok = ByteTokenizer(max_len=4)
    assert tok.vocab_size == 259
    assert tok.encode(b"\xff")[1] == 258


def test_truncation_keeps_eos():
    ids = ByteTokenizer(max_len=6).encode("abcdefgh")
    np.testing.assert_array_equal(ids, [1, 0x61 + 3, 0x62 + 3, 0x63 + 3, 0x64 + 3, 2])


def test_truncated_multibyte_decodes_with_replacement():
    tok = ByteTokenizer(max_len=4)  # room for 2 bytes: all of 'a', half of 'é'
    assert tok.decode(tok.encode("aé")) == "a\ufffd"


def test_padding_is_zero_and_empty_text_encodes():
    ids = ByteTokenizer(max_len=5).encode("")
    np.testing.assert_array_equal(ids, [1, 2, 0, 0, 0])


def test_encode_batch():
    tok = ByteTokenizer(max_len=16)
    batch = tok.encode_batch(["ab", "ширина", ""])
    assert batch.shape == (3, 16) and batch.dtype == np.int32
    np.testing.assert_array_equal(batch[1], tok.encode("ширина"))
    assert [tok.decode(row) for row in batch] == ["ab", "ширина", ""]


def test_bad_input_errors():
    with pytest.raises(ValueError, match="max_len"):
        ByteTokenizer(max_len=1)
    with pytest.raises(TypeError, match="str or bytes"):
        ByteTokenizer(max_len=8).encode(3)
    with pytest.raises(ValueError, match="outside"):
        ByteTokenizer(max_len=8).decode([1, 300, 2])
