"""Task 5: generation returns vocabulary words, reproducibly from one seeded generator."""

import copy

import pytest
import torch
from hw3.generate import generate, generate_sentences, sentences_over_epochs
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


def test_generate_draws_from_the_given_generator_or_from_torchs(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    first = generate(model, vocab, 20, generator=torch.Generator().manual_seed(5))
    assert generate(model, vocab, 20, generator=torch.Generator().manual_seed(5)) == first
    assert generate(model, vocab, 20, generator=torch.Generator().manual_seed(6)) != first
    torch.manual_seed(5)  # without a generator: torch's global one, as the given code
    assert generate(model, vocab, 20) == first


def test_sentences_are_three_readable_strings_from_one_seed(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    sentences = generate_sentences(model, vocab, n_sentences=3, nwords=20, seed=211)
    assert len(sentences) == 3 and len(set(sentences)) == 3
    for sentence in sentences:
        words = sentence.split(" ")
        assert len(words) == 20 and set(words) <= set(WORDS)
    torch.manual_seed(0)  # torch's global state does not matter
    assert generate_sentences(model, vocab, seed=211) == sentences
    assert generate_sentences(model, vocab, seed=212) != sentences
    # the same draws as generate with one generator, three times
    generator = torch.Generator().manual_seed(211)
    assert [" ".join(generate(model, vocab, 20, generator=generator)) for _ in range(3)] == sentences


def test_sentences_over_epochs_are_the_first_sentence_of_each_epochs_weights(model_and_vocab) -> None:
    model, vocab = model_and_vocab
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(3.0)
    states = {2: other.state_dict(), 1: model.state_dict()}
    sentences = sentences_over_epochs(model, states, vocab, nwords=12, seed=7)
    assert list(sentences) == [1, 2]
    assert sentences[1] == generate_sentences(model, vocab, 1, 12, seed=7)[0]
    assert sentences[2] == generate_sentences(other, vocab, 1, 12, seed=7)[0]
    assert sentences[1] != sentences[2]
