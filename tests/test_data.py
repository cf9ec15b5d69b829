"""data_process, batchify, get_batch, the fingerprint — synthetic cases and the real files."""

import json

import pytest
import torch
from hw3.data import (
    WikiText2,
    batchify,
    build_vocab,
    data_process,
    get_batch,
    ids_sha256,
    load_splits,
    main,
    summary,
)
from hw3.vocab import basic_english_tokenize


def test_data_process_drops_empty_lines_and_maps_unknown() -> None:
    vocab = build_vocab(["the cat sat\n", " \n", "the dog\n"])
    ids = data_process(["the cat\n", " \n", "a bird\n"], vocab, basic_english_tokenize)
    itos = vocab.get_itos()
    assert [itos[i] for i in ids.tolist()] == ["the", "cat", "<unk>", "<unk>"]
    assert ids.dtype == torch.long


def test_data_process_refuses_empty_text() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        data_process([" \n"], build_vocab(["a\n"]), basic_english_tokenize)


def test_batchify_shape_and_columns() -> None:
    data = torch.arange(26)
    batched = batchify(data, 4)
    assert batched.shape == (6, 4)  # 26 // 4 rows; the 2 leftover tokens are dropped
    assert batched[:, 0].tolist() == [0, 1, 2, 3, 4, 5]  # each column is a contiguous stretch of text
    assert batched[:, 1].tolist() == [6, 7, 8, 9, 10, 11]


def test_batchify_refuses_batch_larger_than_data() -> None:
    with pytest.raises(ValueError, match="larger than the data"):
        batchify(torch.arange(5), 10)
    with pytest.raises(ValueError, match="positive"):
        batchify(torch.arange(5), 0)


def test_get_batch_assignment_example_bptt_2() -> None:
    # "for bptt=2 and at i=0: data is (2, 20) and target has 40 elements"
    source = batchify(torch.arange(1000), 20)
    data, target = get_batch(source, 0, 2)
    assert data.shape == (2, 20)
    assert target.shape == (40,)
    # data=[a, b], target=[b, c] in each column
    assert torch.equal(target.view(2, 20), source[1:3])
    assert data[:, 0].tolist() == [0, 1] and target.view(2, 20)[:, 0].tolist() == [1, 2]


def test_get_batch_last_chunk_is_shorter() -> None:
    source = batchify(torch.arange(100), 10)  # 10 rows
    data, target = get_batch(source, 7, 35)
    assert data.shape == (2, 10)  # rows 7, 8 as inputs; rows 8, 9 as targets
    assert target.shape == (20,)
    with pytest.raises(IndexError):
        get_batch(source, 9, 35)


def test_ids_sha256_is_little_endian_int64() -> None:
    import hashlib
    import struct

    ids = torch.tensor([1, 2, 300], dtype=torch.long)
    assert ids_sha256(ids) == hashlib.sha256(struct.pack("<3q", 1, 2, 300)).hexdigest()


def test_wikitext2_splits_yield_lines(tmp_path) -> None:
    for name in ("train", "valid", "test"):
        (tmp_path / f"wiki.{name}.tokens").write_text(f" = {name} = \n \n hello {name}\n", encoding="utf-8")
    train, valid, test = WikiText2(root=tmp_path)
    assert list(valid) == [" = valid = \n", " \n", " hello valid\n"]
    assert next(iter(WikiText2(root=tmp_path, split="test"))) == " = test = \n"
    with pytest.raises(ValueError, match="unknown split"):
        WikiText2(root=tmp_path, split="dev")


@pytest.mark.e2e
def test_load_splits_batchifies_each_split_with_the_train_vocabulary(tmp_path) -> None:
    texts = {"train": " a b c a b c a b\n", "valid": " a b z c a b\n", "test": " c b a c\n"}
    for name, text in texts.items():
        (tmp_path / f"wiki.{name}.tokens").write_text(text, encoding="utf-8")
    vocab, train, valid, test = load_splits(tmp_path, batch_size=2, eval_batch_size=3)
    assert vocab.get_itos()[0] == "<unk>" and len(vocab) == 4
    assert train.shape == (4, 2) and valid.shape == (2, 3) and test.shape == (1, 3)
    assert valid[:, 0].tolist() == vocab(["a", "b"]) and valid[0, 1].item() == vocab["<unk>"]  # "z"


def test_real_fingerprint(real_data_dir) -> None:
    result = summary(real_data_dir)
    assert result["vocab_size"] == 28782
    assert [result[s]["n_tokens"] for s in ("train", "valid", "test")] == [2049990, 214417, 241859]


@pytest.mark.e2e
def test_real_vocabulary_and_batches(real_data_dir) -> None:
    train_iter, val_iter, _ = WikiText2(root=real_data_dir)
    vocab = build_vocab(train_iter)
    itos = vocab.get_itos()
    assert itos[:4] == ["<unk>", "the", ",", "."]
    train = batchify(
        data_process(WikiText2(root=real_data_dir, split="train"), vocab, basic_english_tokenize), 20
    )
    val = batchify(data_process(val_iter, vocab, basic_english_tokenize), 10)
    assert train.shape == (102499, 20) and val.shape == (21441, 10)
    assert len(range(0, train.size(0) - 1, 35)) == 2929  # batches per epoch at bptt 35
    assert " ".join(itos[i] for i in train[:8, 0].tolist()) == "= valkyria chronicles iii = senjō no valkyria"


@pytest.mark.e2e
def test_summary_cli(real_data_dir, capsys) -> None:
    assert main(["--summary", "--data-dir", str(real_data_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["vocab_size"] == 28782 and printed["test"]["n_tokens"] == 241859


def test_cli_reports_a_bad_folder(tmp_path, capsys) -> None:
    assert main(["--summary", "--data-dir", str(tmp_path)]) == 2
    assert "wiki.train.tokens" in capsys.readouterr().err
