"""Task 5: generate sentences with the trained model.

``generate`` is the assignment's function (a ``device`` argument added, defaulting to the model's
device). ``generate_seeded`` samples the same way from a seeded ``torch.Generator`` so the sentences
are reproducible, and ``generate_sentences`` returns readable sentences (words joined by spaces;
``<unk>`` stays visible).
"""

import torch


def generate(model, vocab, nwords=100, temp=1.0, device=None):
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    ntokens = len(vocab)
    itos = vocab.vocab.get_itos()
    model_input = torch.randint(ntokens, (1, 1), dtype=torch.long).to(device)
    words = []
    with torch.no_grad():
        for i in range(nwords):  # noqa: B007 (the assignment's code, kept as given)
            output = model(model_input, None)
            word_weights = output[-1].squeeze().div(temp).exp().cpu()
            word_idx = torch.multinomial(word_weights, 1)[0]
            word_tensor = torch.Tensor([[word_idx]]).long().to(device)
            model_input = torch.cat([model_input, word_tensor], 0)
            word = itos[word_idx]
            words.append(word)
    return words


def generate_seeded(
    model: torch.nn.Module,
    vocab,
    nwords: int = 20,
    temp: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int = 211,
    device: torch.device | str | None = None,
) -> list[str]:
    """``generate`` with every random draw taken from ``generator`` (a CPU generator seeded with
    ``seed`` when none is given), so the same model and seed give the same words.

    The first word is drawn uniformly from the vocabulary, each next word from
    ``softmax(logits / temp)`` (the maximum is subtracted before ``exp``, which leaves the
    distribution unchanged and avoids overflow at low temperatures).
    """
    if temp <= 0:
        raise ValueError(f"temperature must be positive, got {temp}")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    ntokens = len(vocab)
    itos = vocab.vocab.get_itos()
    model_input = torch.randint(ntokens, (1, 1), dtype=torch.long, generator=generator).to(device)
    words = []
    with torch.no_grad():
        for _ in range(nwords):
            logits = model(model_input, None)[-1].squeeze().float().cpu() / temp
            word_weights = (logits - logits.max()).exp()
            word_idx = int(torch.multinomial(word_weights, 1, generator=generator)[0])
            next_word = torch.tensor([[word_idx]], dtype=torch.long, device=device)
            model_input = torch.cat([model_input, next_word], 0)
            words.append(itos[word_idx])
    return words


def generate_sentences(
    model: torch.nn.Module,
    vocab,
    n_sentences: int = 3,
    nwords: int = 20,
    temp: float = 1.0,
    seed: int = 211,
) -> list[str]:
    """``n_sentences`` reproducible sentences of ``nwords`` words each, as strings."""
    generator = torch.Generator().manual_seed(seed)
    return [
        " ".join(generate_seeded(model, vocab, nwords, temp, generator)) for _ in range(n_sentences)
    ]
