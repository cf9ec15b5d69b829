"""WikiText-2 as the assignment uses it: splits as line iterators, `data_process`, `batchify`,
`get_batch` and a fingerprint of the processed data.

`python -m hw3.data --summary [--data-dir DIR]` prints the fingerprint as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from hw3.download import SPLIT_FILES, wikitext2_dir
from hw3.vocab import Vocab, basic_english_tokenize, build_vocab_from_iterator


def read_lines(path: str | Path) -> Iterator[str]:
    """The lines of one `wiki.*.tokens` file, newline kept,
    as torchtext's WikiText2 yielded them."""
    with open(path, encoding="utf-8") as f:
        yield from f


def WikiText2(
    root: str | Path | None = None, split: str | tuple[str, ...] = ("train", "valid", "test")
):
    """Drop-in for `torchtext.datasets.WikiText2`: one line iterator per requested split.

    `root` is a folder holding the three `wiki.*.tokens` files; without it the data is found or
    fetched by `hw3.download.wikitext2_dir` (cache, offline folder, or download).
    """
    folder = Path(root) if root is not None else wikitext2_dir()
    splits = (split,) if isinstance(split, str) else tuple(split)
    for name in splits:
        if name not in SPLIT_FILES:
            raise ValueError(f"unknown split {name!r}; expected one of {sorted(SPLIT_FILES)}")
    iters = tuple(read_lines(folder / SPLIT_FILES[name]) for name in splits)
    return iters[0] if isinstance(split, str) else iters


def build_vocab(
    train_lines: Iterable[str], tokenizer: Callable[[str], list[str]] = basic_english_tokenize
) -> Vocab:
    """The assignment's vocabulary: `<unk>` first, unknown words mapped to it."""
    vocab = build_vocab_from_iterator(map(tokenizer, train_lines), specials=["<unk>"])
    vocab.set_default_index(vocab["<unk>"])
    return vocab


def data_process(
    raw_text_iter: Iterable[str], vocab: Vocab, tokenizer: Callable[[str], list[str]]
) -> Tensor:
    """Converts raw text into a flat Tensor (empty lines dropped)."""
    data = [torch.tensor(vocab(tokenizer(item)), dtype=torch.long) for item in raw_text_iter]
    data = [t for t in data if t.numel() > 0]
    if not data:
        raise ValueError("data_process got no tokens: is the text empty?")
    return torch.cat(data)


def batchify(data: Tensor, bsz: int, device: torch.device | str | None = None) -> Tensor:
    """Divides the data into bsz separate sequences, removing extra elements
    that wouldn't cleanly fit.

    Args:
        data: Tensor, shape [N]
        bsz: int, batch size
        device: where the result goes (unchanged when None)

    Returns:
        Tensor of shape [N // bsz, bsz]
    """
    if bsz < 1:
        raise ValueError(f"batch size must be positive, got {bsz}")
    if data.dim() != 1:
        raise ValueError(
            f"batchify expects a flat tensor of token ids, got shape {tuple(data.shape)}"
        )
    seq_len = data.size(0) // bsz
    if seq_len == 0:
        raise ValueError(f"batch size {bsz} is larger than the data ({data.size(0)} tokens)")
    data = data[: seq_len * bsz]
    data = data.view(bsz, seq_len).t().contiguous()
    return data if device is None else data.to(device)


def load_splits(
    folder: str | Path,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device | str | None = None,
) -> tuple[Vocab, Tensor, Tensor, Tensor]:
    """The vocabulary and the batchified train, valid and test splits of the WikiText-2 files in
    `folder` (the assignment's pipeline, for the command line and the benchmarks)."""
    vocab = build_vocab(WikiText2(folder, split="train"))
    train_iter, val_iter, test_iter = WikiText2(folder)
    return (
        vocab,
        batchify(data_process(train_iter, vocab, basic_english_tokenize), batch_size, device),
        batchify(data_process(val_iter, vocab, basic_english_tokenize), eval_batch_size, device),
        batchify(data_process(test_iter, vocab, basic_english_tokenize), eval_batch_size, device),
    )


def get_batch(source: Tensor, i: int, bptt: int) -> tuple[Tensor, Tensor]:
    """
    Args:
        source: Tensor, shape [full_seq_len, batch_size]
        i: int
        bptt: int
    Returns:
        tuple (data, target), where data has shape [seq_len, batch_size] and
        target has shape [seq_len * batch_size]
    """
    seq_len = min(bptt, len(source) - 1 - i)
    if seq_len < 1:
        raise IndexError(f"get_batch: no target left at i={i} for a source of {len(source)} rows")
    data = source[i : i + seq_len]
    # the next word of each input word, flattened row by row as the model's output is
    target = source[i + 1 : i + 1 + seq_len].reshape(-1)  # completed
    return data, target


def ids_sha256(ids: Tensor) -> str:
    """sha256 of token ids as little-endian int64 bytes."""
    array = ids.detach().to("cpu", torch.int64).contiguous().numpy()
    return hashlib.sha256(array.astype("<i8", copy=False).tobytes()).hexdigest()


def itos_sha256(vocab: Vocab) -> str:
    """sha256 of the vocabulary words joined by newlines (UTF-8)."""
    return hashlib.sha256("\n".join(vocab.get_itos()).encode("utf-8")).hexdigest()


def summary(folder: str | Path) -> dict:
    """The data fingerprint: vocabulary size and hash,
    and per split the token count and ids hash."""
    folder = Path(folder)
    vocab = build_vocab(read_lines(folder / SPLIT_FILES["train"]))
    result: dict = {"vocab_size": len(vocab), "itos_sha256": itos_sha256(vocab)}
    for name, filename in SPLIT_FILES.items():
        ids = data_process(read_lines(folder / filename), vocab, basic_english_tokenize)
        result[name] = {"n_tokens": int(ids.numel()), "ids_sha256": ids_sha256(ids)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw3.data", description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="print the data fingerprint as JSON")
    parser.add_argument("--data-dir", help="offline folder with wiki.{train,valid,test}.tokens")
    args = parser.parse_args(argv)
    from hw3.download import DataError

    try:
        folder = wikitext2_dir(data_dir=args.data_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        print(json.dumps(summary(folder), indent=2))
    else:
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
