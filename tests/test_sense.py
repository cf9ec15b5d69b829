"""Task 5's "Do they make sense?": the measurements on a tiny synthetic corpus, checked by hand, and
the answer written from them."""

import math

import pytest
import torch
from hw3.sense import (
    longest_seen_stretch,
    markdown_escape,
    ngram_codes,
    seen_share,
    sense_answer,
    sense_check,
    sense_facts,
)
from hw3.vocab import Vocab

VOCAB = Vocab(["<unk>", "a", "b", "c", "d"])
# running text (column after column) a b a b a b a c: pairs (a,b) (b,a) (a,c); triples aba bab abc
TRAIN = torch.tensor([1, 2, 1, 2, 1, 2, 1, 3]).view(2, 4).t()
TEST = torch.tensor([[1, 1], [2, 2], [1, 1], [3, 3], [3, 3]])
HISTORY = [{"epoch": 1, "val_ppl": 9.0}, {"epoch": 2, "val_ppl": 5.5}]


def check(sentences=("a b a", "c c d"), epochs=None):
    epochs = epochs if epochs is not None else {1: "c d c", 2: "a b a"}
    return sense_check(list(sentences), epochs, HISTORY, TRAIN, TEST, 0.5, VOCAB, bptt=2, max_batches=1)


def test_ngram_codes_and_seen_share() -> None:
    ids = torch.tensor([[1, 2, 3]])
    assert ngram_codes(ids, 2, 5).tolist() == [[1 * 5 + 2, 2 * 5 + 3]]
    assert ngram_codes(ids, 3, 5).tolist() == [[(1 * 5 + 2) * 5 + 3]]
    known = torch.tensor([1 * 5 + 2])
    assert seen_share(ids, known, 2, 5) == 0.5


def test_unigram_perplexity_is_measured_on_the_targets_evaluate_scores() -> None:
    result = check()
    # unigram probabilities from the training text: a 4/8, b 3/8, c 1/8; targets of one batch: rows 1-2
    expected = math.exp(-(2 * math.log(3 / 8) + 2 * math.log(4 / 8)) / 4)
    assert result["unigram_ppl"] == pytest.approx(expected)
    assert result["test_ppl"] == pytest.approx(math.exp(0.5))


def test_seen_pairs_triples_and_the_longest_stretch() -> None:
    result = check()
    # "a b a": (a,b) (b,a) seen, triple aba seen; "c c d": nothing seen
    assert result["pair_share"] == pytest.approx(2 / 4)
    assert result["triple_share"] == pytest.approx(1 / 2)
    assert result["longest_stretch"] == 3 and result["longest_in"] == 1 and result["nwords"] == 3
    # frequency-drawn words: a share in [0, 1], from a seeded generator (the same every time)
    assert (
        0 <= result["pair_share_unigram"] <= 1
        and check()["pair_share_unigram"] == result["pair_share_unigram"]
    )


def test_longest_stretch_counts_words_of_consecutive_seen_triples() -> None:
    known = torch.unique(ngram_codes(torch.tensor([1, 2, 1, 2, 1, 3]), 3, 5))  # aba bab aba abc
    assert longest_seen_stretch(torch.tensor([4, 1, 2, 1, 2, 4]), known, 5) == 4  # "a b a b"
    assert longest_seen_stretch(torch.tensor([4, 4, 4]), known, 5) == 0


def test_the_epochs_are_measured_in_order_with_their_validation_perplexity() -> None:
    result = check(epochs={2: "a b a", 1: "c d c"})
    assert [row["epoch"] for row in result["epochs"]] == [1, 2]
    assert [row["val_ppl"] for row in result["epochs"]] == [9.0, 5.5]
    assert [row["pair_share"] for row in result["epochs"]] == [0.0, 1.0]


def test_the_facts_and_the_answer_state_this_runs_numbers() -> None:
    facts = sense_facts(check())
    table, measured = facts.split("\n\n")
    assert table.splitlines()[2] == "| 1 | 9.0 | *c d c* | 0% |"
    assert "| 2 | 5.5 | *a b a* | 100% |" in table
    assert "3 of 3 words (sentence 1)" in measured and "occur in the training text: 50%" in measured
    prose = sense_answer(check())
    assert prose.startswith("**Do they make sense?**") and prose.count("Do they make sense?") == 1
    assert "is 3 of 3 (sentence 1)" in prose
    assert "50% of the adjacent word pairs" in prose and "50% of their word triples" in prose
    assert f"test perplexity is {math.exp(0.5):.1f}" in prose
    assert "went from 9.0 (epoch 1) to 5.5 (epoch 2)" in prose
    # one sentence per epoch: the shares are listed, never called a trend
    assert "(0%, 100%) are too small a sample to show a trend" in prose
    assert "rose" not in prose and "fell" not in prose
    assert "choice among" not in prose  # perplexity is not a number of equally likely words
    nothing = sense_answer(check(sentences=("c c d", "d d d")))
    assert "no three consecutive words of them occur together in the training text" in nothing


def test_generated_words_print_literally_in_markdown() -> None:
    assert markdown_escape("<unk> a_b *x* | $5 @-@") == r"\<unk\> a\_b \*x\* \| \$5 \@-\@"
