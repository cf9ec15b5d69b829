"""The key result of each task, for the report's answer index (metrics.json's "answers")."""

import dataclasses


def task_answers(
    train_data, first_words, data, target, itos, ntokens, model, loss_check, epoch_sentences
) -> dict:
    """Task 1's shape and first words, Task 2's sample (the first column of data and target, in
    words), Task 3's vocabulary size and parameter count, Task 4's check of train()'s loss line
    (decoder_cross_entropy against the two lines as written), and the sentence of each epoch's
    model (Task 5)."""
    return {
        "train_shape": list(train_data.shape),
        "first_words": first_words,
        "batch_data": " ".join(itos[t] for t in data[:, 0].tolist()),
        "batch_target": " ".join(itos[t] for t in target.view(data.shape)[:, 0].tolist()),
        "ntokens": ntokens,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "loss_check": dataclasses.asdict(loss_check),
        "epoch_sentences": {str(epoch): s for epoch, s in sorted(epoch_sentences.items())},
    }
