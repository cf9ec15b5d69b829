"""Task 5: generate sentences with the trained model.

generate is the given function, with two arguments added: the device (by default the model's) and
a torch.Generator for its two random draws (by default torch's global one, as given).
generate_sentences draws the three sentences of Task 5 from one generator seeded with the run's
seed: the notebook and the command line give the same sentences for the same model and seed.
"""

import copy

import torch


def generate(model, vocab, nwords=100, temp=1.0, device=None, generator=None):
    device = device if device is not None else next(model.parameters()).device
    model.eval()
    ntokens = len(vocab)
    itos = vocab.vocab.get_itos()
    model_input = torch.randint(ntokens, (1, 1), dtype=torch.long, generator=generator).to(device)
    words = []
    with torch.no_grad():
        for i in range(nwords):
            output = model(model_input, None)
            word_weights = output[-1].squeeze().div(temp).exp().cpu()
            word_idx = torch.multinomial(word_weights, 1, generator=generator)[0]
            word_tensor = torch.Tensor([[word_idx]]).long().to(device)
            model_input = torch.cat([model_input, word_tensor], 0)
            word = itos[word_idx]
            words.append(word)
    return words


def generate_sentences(model, vocab, n_sentences=3, nwords=20, seed=211, temp=1.0) -> list[str]:
    """n_sentences sentences of nwords words by generate, all drawn from one generator seeded with
    seed: the same model and seed give the same sentences."""
    generator = torch.Generator().manual_seed(seed)
    return [
        " ".join(generate(model, vocab, nwords, temp, generator=generator))
        for _ in range(n_sentences)
    ]


def sentences_over_epochs(model, epoch_states, vocab, nwords=20, seed=211) -> dict[int, str]:
    """The first sentence of generate_sentences (same seed) for the model's weights after each
    epoch (epoch_states: epoch -> state_dict, as EpochWeights keeps them)."""
    model = copy.deepcopy(model)
    sentences = {}
    for epoch, state in sorted(epoch_states.items()):
        model.load_state_dict(state)
        sentences[epoch] = generate_sentences(model, vocab, 1, nwords, seed)[0]
    return sentences
