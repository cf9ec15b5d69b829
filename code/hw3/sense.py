"""Task 5's question, "Do they make sense?", answered from measurements of this run.

sense_check measures, on the same test words that evaluate scores:
- the model's test perplexity against a unigram model's (only the word frequencies of the
  training text),
- the share of the sentences' adjacent word pairs and triples that occur in the training text,
  against the same shares for words drawn from the frequencies alone,
- the longest stretch of a sentence in which every three-word window occurs in the training text,
- per epoch: the validation perplexity and the sentence of that epoch's model (same seed), with
  the share of its word pairs seen in the training text.
sense_facts shows these numbers as Markdown; sense_answer writes the answer from them (the build
puts it below the numbers, unless the students wrote their own).
"""

import math

import torch
from torch import Tensor

from hw3.metrics import perplexity


def running_text(batched: Tensor) -> Tensor:
    """Batchified data [rows, columns] back to one sequence of token ids, column after column."""
    return batched.t().reshape(-1).cpu()


def ngram_codes(ids: Tensor, n: int, base: int) -> Tensor:
    """The n-grams along the last dimension of ids, each as one integer (base: the vocabulary
    size): [..., length] -> [..., length - n + 1]."""
    codes = torch.zeros(ids.shape[:-1] + (ids.size(-1) - n + 1,), dtype=torch.long)
    for k in range(n):
        codes = codes * base + ids[..., k : ids.size(-1) - n + 1 + k].long()
    return codes


def seen_share(ids: Tensor, known: Tensor, n: int, base: int) -> float:
    """The share of the n-grams of ids ([sentences, words]) that are in known (sorted codes)."""
    return torch.isin(ngram_codes(ids, n, base), known).double().mean().item()


def longest_seen_stretch(ids: Tensor, known_triples: Tensor, base: int) -> int:
    """The most consecutive words of ids (one sentence) whose every three-word window is in
    known_triples; 0 when no window is."""
    seen = torch.isin(ngram_codes(ids, 3, base), known_triples).tolist()
    longest = run = 0
    for hit in seen:
        run = run + 1 if hit else 0
        longest = max(longest, run)
    return longest + 2 if longest else 0


def unigram_perplexity(train_text: Tensor, targets: Tensor, ntokens: int) -> float:
    """The perplexity on targets of a model that knows only the training text's word frequencies."""
    counts = torch.bincount(train_text, minlength=ntokens).double()
    log_probs = (counts / counts.sum()).log()
    return math.exp(-log_probs[targets].mean().item())


def sense_check(
    sentences,
    epoch_sentences,
    history,
    train_data,
    test_data,
    test_loss,
    vocab,
    bptt,
    max_batches=None,
    seed=211,
) -> dict:
    """Measure this run for the answer to "Do they make sense?" (see the module docstring).

    sentences: Task 5's sentences (strings); epoch_sentences: epoch -> the sentence of that
    epoch's model; history: fit's per-epoch rows; test_loss: evaluate's on test_data."""
    ntokens, stoi = len(vocab), vocab.get_stoi()
    train_text = running_text(train_data)
    known_pairs = torch.unique(ngram_codes(train_text, 2, ntokens))
    known_triples = torch.unique(ngram_codes(train_text, 3, ntokens))
    rows = (
        len(test_data) - 1 if max_batches is None else min(len(test_data) - 1, max_batches * bptt)
    )
    targets = test_data[1 : 1 + rows].reshape(-1).cpu()  # the targets evaluate() scored

    def ids(sentence: str) -> Tensor:
        return torch.tensor([stoi.get(word, 0) for word in sentence.split(" ")])

    generated = torch.stack([ids(s) for s in sentences])
    counts = torch.bincount(train_text, minlength=ntokens).float()
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.multinomial(counts, generated.numel(), replacement=True, generator=generator)
    drawn = drawn.view(generated.shape)
    stretches = [longest_seen_stretch(row, known_triples, ntokens) for row in generated]
    val_ppl = {row["epoch"]: row["val_ppl"] for row in history}
    return {
        "test_ppl": perplexity(test_loss),
        "unigram_ppl": unigram_perplexity(train_text, targets, ntokens),
        "pair_share": seen_share(generated, known_pairs, 2, ntokens),
        "pair_share_unigram": seen_share(drawn, known_pairs, 2, ntokens),
        "triple_share": seen_share(generated, known_triples, 3, ntokens),
        "triple_share_unigram": seen_share(drawn, known_triples, 3, ntokens),
        "longest_stretch": max(stretches),
        "longest_in": stretches.index(max(stretches)) + 1,
        "nwords": generated.size(1),
        "epochs": [
            {
                "epoch": epoch,
                "val_ppl": val_ppl.get(epoch, float("nan")),
                "sentence": sentence,
                "pair_share": seen_share(ids(sentence)[None], known_pairs, 2, ntokens),
            }
            for epoch, sentence in sorted(epoch_sentences.items())
        ],
    }


def markdown_escape(text: str) -> str:
    """text that Markdown prints literally (generated words may hold its special characters)."""
    return "".join("\\" + c if c in "\\`*_{}[]<>#|$~@" else c for c in text)


def samples_table(epochs: list[dict]) -> str:
    """The sentences over the epochs side by side, as a Markdown table."""
    lines = [
        "| epoch | valid ppl | the sentence of that epoch's model (the same seed) | pairs seen |",
        # the dashes set the columns' widths when the table is wrapped to the page
        "|-----:|-----:|:----------------------------------------|-----:|",
    ]
    for row in epochs:
        sentence = markdown_escape(row["sentence"])
        lines.append(
            f"| {row['epoch']} | {row['val_ppl']:.1f} | *{sentence}* | {row['pair_share']:.0%} |"
        )
    return "\n".join(lines)


def sense_facts(check: dict) -> str:
    """What sense_check measured, in Markdown: the sentences over the epochs side by side, then
    the three sentences against words drawn from the word frequencies alone."""
    c = check
    facts = [
        f"- adjacent word pairs of the three sentences that occur in the training text: "
        f"{c['pair_share']:.0%} (words drawn from the frequencies alone: "
        f"{c['pair_share_unigram']:.0%})",
        f"- word triples that occur in the training text: {c['triple_share']:.0%} "
        f"(frequencies alone: {c['triple_share_unigram']:.0%})",
        f"- the longest stretch whose every three-word window occurs in the training text: "
        f"{c['longest_stretch']} of {c['nwords']} words (sentence {c['longest_in']})",
        f"- test perplexity {c['test_ppl']:.1f}; a model of the word frequencies alone, on the "
        f"same test words: {c['unigram_ppl']:.1f}",
    ]
    if not c["longest_stretch"]:
        facts[2] = (
            "- no three consecutive words of the sentences occur together in the training text"
        )
    return samples_table(c["epochs"]) + "\n\n" + "\n".join(facts)


def sense_answer(check: dict) -> str:
    """The answer to "Do they make sense?" in Markdown, from sense_check's measurements: what they
    show, and no more (one sentence per epoch is too small a sample for a trend)."""
    c = check
    if c["longest_stretch"]:
        stretch = (
            f"the longest run of words whose every three-word window occurs in the training text "
            f"is {c['longest_stretch']} of {c['nwords']} (sentence {c['longest_in']})"
        )
    else:
        stretch = "no three consecutive words of them occur together in the training text"
    answer = (
        f"**Do they make sense?** In short stretches, not as sentences: {stretch}. Locally, "
        f"{c['pair_share']:.0%} of the adjacent word pairs of the three sentences and "
        f"{c['triple_share']:.0%} of their word triples occur in the training text, against "
        f"{c['pair_share_unigram']:.0%} and {c['triple_share_unigram']:.0%} for words drawn from "
        f"the word frequencies alone: the model has learnt which words follow which. Its test "
        f"perplexity is {c['test_ppl']:.1f}, against {c['unigram_ppl']:.1f} for a model of the "
        f"word frequencies alone on the same test words: the probability it gives a test word is, "
        f"as a geometric mean, {c['unigram_ppl'] / c['test_ppl']:.1f} times what the frequencies "
        f"alone give."
    )
    epochs = c["epochs"]
    if len(epochs) > 1:
        first, last = epochs[0], epochs[-1]
        shares = [row["pair_share"] for row in epochs]
        answer += (
            f" Over the epochs the validation perplexity went from {first['val_ppl']:.1f} "
            f"(epoch {first['epoch']}) to {last['val_ppl']:.1f} (epoch {last['epoch']}). The "
            f"sentences of the table are one per epoch, so their shares of seen word pairs "
            f"({', '.join(f'{x:.0%}' for x in shares)}) are too small a sample to show a trend; "
            f"read them side by side for what changed."
        )
    return answer
