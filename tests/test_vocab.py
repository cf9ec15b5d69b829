"""torchtext 0.18 parity of the basic_english tokenizer and build_vocab_from_iterator."""

import pytest
from hw3.vocab import Vocab, basic_english_tokenize, build_vocab_from_iterator, get_tokenizer


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("Hello World", ["hello", "world"]),
        ("don't stop", ["don", "'", "t", "stop"]),
        ('He said "yes".', ["he", "said", "yes", "."]),
        ("a,b (c) d! e? f; g: h", ["a", ",", "b", "(", "c", ")", "d", "!", "e", "?", "f", "g", "h"]),
        ("line one<br />line two", ["line", "one", "line", "two"]),
        ("3.5 million", ["3", ".", "5", "million"]),
        ("  tabs\tand\nnewlines  \n", ["tabs", "and", "newlines"]),
        ("Café STRASSE Ωmega", ["café", "strasse", "ωmega"]),
        ("The 1 @,@ 000 <unk> men @-@ at", ["the", "1", "@", ",", "@", "000", "<unk>", "men", "@-@", "at"]),
        (" = Valkyria Chronicles III = \n", ["=", "valkyria", "chronicles", "iii", "="]),
        (" \n", []),
    ],
)
def test_basic_english(line: str, tokens: list[str]) -> None:
    assert basic_english_tokenize(line) == tokens


def test_get_tokenizer_only_basic_english() -> None:
    assert get_tokenizer("basic_english") is basic_english_tokenize
    with pytest.raises(ValueError, match="basic_english"):
        get_tokenizer("spacy")


def test_vocab_order_specials_first_then_frequency_then_string_order() -> None:
    lines = [["b", "a", "c", "a"], ["b", "d", "<unk>"], ["c", "z"]]
    vocab = build_vocab_from_iterator(lines, specials=["<unk>"])
    # a, b, c twice each (ties broken by string order), d and z once; <unk> first and only once.
    assert vocab.get_itos() == ["<unk>", "a", "b", "c", "d", "z"]


def test_vocab_special_last_min_freq_and_max_tokens() -> None:
    lines = [["x", "y", "y", "z", "z", "z"]]
    assert build_vocab_from_iterator(lines, specials=["<pad>"], special_first=False).get_itos() == [
        "z",
        "y",
        "x",
        "<pad>",
    ]
    assert build_vocab_from_iterator(lines, min_freq=2).get_itos() == ["z", "y"]
    assert build_vocab_from_iterator(lines, specials=["<unk>"], max_tokens=3).get_itos() == [
        "<unk>",
        "z",
        "y",
    ]


def test_unknown_words_raise_without_default_and_map_with_it() -> None:
    vocab = build_vocab_from_iterator([["hello", "world", "hello"]], specials=["<unk>"])
    with pytest.raises(RuntimeError, match="not found"):
        vocab["never-seen"]
    vocab.set_default_index(vocab["<unk>"])
    assert vocab(["hello", "never-seen", "world"]) == [1, 0, 2]
    assert vocab["never-seen"] == 0
    assert "hello" in vocab and "never-seen" not in vocab


def test_vocab_interface_used_by_the_notebook() -> None:
    vocab = Vocab(["<unk>", "the", "cat"])
    assert len(vocab) == 3
    assert vocab.vocab.get_itos() == ["<unk>", "the", "cat"]
    assert vocab.get_stoi() == {"<unk>": 0, "the": 1, "cat": 2}
    assert vocab.lookup_tokens([2, 1]) == ["cat", "the"]
    with pytest.raises(RuntimeError):
        vocab.lookup_token(3)
    with pytest.raises(IndexError):
        vocab.set_default_index(5)
    with pytest.raises(ValueError, match="unique"):
        Vocab(["a", "a"])
