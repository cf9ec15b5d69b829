"""Task 5: generation returns vocabulary words, reproducibly when seeded."""

import pytest
import torch
from hw3.generate import generate, generate_seeded, generate_sentences
from hw3.model import TransformerModel
from hw3.vocab import Vocab

WORDS = ["<unk>"] + [f"w{i}" for i in range(29)]


@pytest.fixture
def model_and_vocab():
    torch.manual_seed(0)
    return TransformerModel(len(WORDS), 16, 2, 32, 2, 0.0), Vocab(WORDS)


def test_assignment_generate_returns_vocabulary_words(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    words = generate(model, vocab, nwords=20)
    assert len(words) == 20 and set(words) <= set(WORDS)


def test_seeded_generation_is_reproducible_and_seed_dependent(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    first = generate_seeded(model, vocab, nwords=20, seed=5)
    assert len(first) == 20 and set(first) <= set(WORDS)
    assert generate_seeded(model, vocab, nwords=20, seed=5) == first
    assert generate_seeded(model, vocab, nwords=20, seed=6) != first


def test_low_temperature_does_not_overflow(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    with torch.no_grad():
        model.decoder.bias[7] = 50.0  # one dominant word
    words = generate_seeded(model, vocab, nwords=10, temp=0.01)
    assert words == ["w6"] * 10
    with pytest.raises(ValueError, match="temperature"):
        generate_seeded(model, vocab, temp=0.0)


def test_sentences_are_three_readable_strings(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    sentences = generate_sentences(model, vocab, n_sentences=3, nwords=20, seed=211)
    assert len(sentences) == 3 and len(set(sentences)) == 3
    for sentence in sentences:
        words = sentence.split(" ")
        assert len(words) == 20 and set(words) <= set(WORDS)
    assert generate_sentences(model, vocab, seed=211) == sentences
