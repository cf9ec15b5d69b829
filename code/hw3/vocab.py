"""torchtext 0.18 parity: the `basic_english` tokenizer and `build_vocab_from_iterator`.

torchtext is no longer released (0.18 pins torch 2.3), so these reproduce its behaviour exactly:
same normalisation rules in the same order, same vocabulary order (specials first, then by
descending frequency, ties broken by Python string order), same default-index semantics.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# The rules of torchtext.data.utils._basic_english_normalize,
# applied in this order after lower-casing.
_BASIC_ENGLISH_RULES = [
    (re.compile(r"\'"), " '  "),
    (re.compile(r"\""), ""),
    (re.compile(r"\."), " . "),
    (re.compile(r"<br \/>"), " "),
    (re.compile(r","), " , "),
    (re.compile(r"\("), " ( "),
    (re.compile(r"\)"), " ) "),
    (re.compile(r"\!"), " ! "),
    (re.compile(r"\?"), " ? "),
    (re.compile(r"\;"), " "),
    (re.compile(r"\:"), " "),
    (re.compile(r"\s+"), " "),
]


def basic_english_tokenize(line: str) -> list[str]:
    """Tokenize one line exactly as `get_tokenizer('basic_english')` did in torchtext 0.18."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def get_tokenizer(name: str):
    """The subset of `torchtext.data.utils.get_tokenizer` the assignment uses."""
    if name != "basic_english":
        raise ValueError(f"only the 'basic_english' tokenizer is available, not {name!r}")
    return basic_english_tokenize


class Vocab:
    """Word <-> id mapping with torchtext's `Vocab` interface.

    `vocab(tokens)` maps a token list to ids, `vocab[token]` one token, `len(vocab)` the size,
    `get_itos()`/`get_stoi()` the tables. Without a default index an unknown token raises, as in
    torchtext; `set_default_index` makes unknown tokens map to that id.
    """

    def __init__(self, itos: list[str]) -> None:
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary words must be unique")
        self._itos = list(itos)
        self._stoi = {word: i for i, word in enumerate(self._itos)}
        self._default_index: int | None = None

    @property
    def vocab(self) -> Vocab:
        # torchtext's Vocab wrapped a C++ object at `.vocab`;
        # the assignment calls vocab.vocab.get_itos().
        return self

    def set_default_index(self, index: int | None) -> None:
        if index is not None and not 0 <= index < len(self._itos):
            raise IndexError(
                f"default index {index} outside the vocabulary of {len(self._itos)} words"
            )
        self._default_index = index

    def get_default_index(self) -> int | None:
        return self._default_index

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        index = self._stoi.get(token, self._default_index)
        if index is None:
            raise RuntimeError(f"Token {token} not found and default index is not set")
        return index

    def __call__(self, tokens: list[str]) -> list[int]:
        return self.lookup_indices(tokens)

    def lookup_indices(self, tokens: list[str]) -> list[int]:
        return [self[token] for token in tokens]

    def lookup_token(self, index: int) -> str:
        if not 0 <= index < len(self._itos):
            raise RuntimeError(
                f"Specified index {index} is out of bounds of the size of itos dictionary"
            )
        return self._itos[index]

    def lookup_tokens(self, indices: list[int]) -> list[str]:
        return [self.lookup_token(i) for i in indices]

    def get_itos(self) -> list[str]:
        return list(self._itos)

    def get_stoi(self) -> dict[str, int]:
        return dict(self._stoi)


def build_vocab_from_iterator(
    iterator: Iterable[list[str]],
    min_freq: int = 1,
    specials: list[str] | None = None,
    special_first: bool = True,
    max_tokens: int | None = None,
) -> Vocab:
    """`torchtext.vocab.build_vocab_from_iterator` (0.18): order by (-frequency, token)."""
    counter: Counter[str] = Counter()
    for tokens in iterator:
        counter.update(tokens)
    specials = list(specials or [])
    by_frequency = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    if max_tokens is not None:
        if max_tokens <= len(specials):
            raise ValueError("max_tokens must be greater than the number of special tokens")
        by_frequency = by_frequency[: max_tokens - len(specials)]
    words = [word for word, freq in by_frequency if freq >= min_freq and word not in specials]
    return Vocab(specials + words if special_first else words + specials)
