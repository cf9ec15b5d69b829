"""HParams: the assignment's box is enforced, with the field and the allowed range in the message."""

import json

import pytest
from hw3.hparams import HParams, profile_defaults

# field -> (a value below the box, a value above it, the range text the message must show)
OUT_OF_RANGE = {
    "emsize": (198, 252, "[200, 250]"),
    "nhid": (199, 251, "[200, 250]"),
    "nlayers": (1, 5, "[2, 4]"),
    "nhead": (1, 5, "[2, 4]"),
    "dropout": (-0.01, 0.31, "[0, 0.3]"),
    "lr": (4.9e-3, 5.01, "[0.005, 5]"),
}


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
@pytest.mark.parametrize("side", [0, 1], ids=["below", "above"])
def test_out_of_range_is_refused_naming_field_and_range(name: str, side: int) -> None:
    value = OUT_OF_RANGE[name][side]
    changes = {name: value}
    if name == "nhead":  # keep emsize divisible so only the range is at fault
        changes["emsize"] = 200 if value == 5 else 250
    if name in ("emsize",):
        changes["nhead"] = 2
    with pytest.raises(ValueError) as excinfo:
        HParams(**changes)
    message = str(excinfo.value)
    assert name in message and OUT_OF_RANGE[name][2] in message


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_range_edges_are_accepted(name: str) -> None:
    low, high = {"emsize": (200, 250), "nhid": (200, 250), "nlayers": (2, 4), "nhead": (2, 2),
                 "dropout": (0.0, 0.3), "lr": (5e-3, 5.0)}[name]  # fmt: skip
    extra = {"weight_decay": 0.0} if name == "lr" else {}  # the default decay is too strong at lr 5.0
    assert getattr(HParams(**{name: low}, **extra), name) == low
    assert getattr(HParams(**{name: high}, **extra), name) == high


def test_emsize_must_be_divisible_by_nhead() -> None:
    with pytest.raises(ValueError, match="divisible"):
        HParams(emsize=250, nhead=3)
    assert HParams(emsize=204, nhead=3).nhead == 3


def test_emsize_must_be_even_for_the_positional_encoding() -> None:
    """201 = 3 x 67 was accepted, then the given PositionalEncoding failed to build (it fills the
    columns in sin/cos pairs); found by the first tuning study sampling nhead = 3."""
    with pytest.raises(ValueError, match="multiple of 6"):
        HParams(emsize=201, nhead=3)


@pytest.mark.parametrize("nhead", [2, 3, 4])
def test_every_emsize_the_box_allows_builds_the_given_model(nhead: int) -> None:
    from hw3.model import TransformerModel

    accepted = []
    for emsize in range(200, 251):
        try:
            hp = HParams(emsize=emsize, nhead=nhead)
        except ValueError:
            continue
        TransformerModel(10, hp.emsize, hp.nhead, 8, 2, 0.0, True)
        accepted.append(emsize)
    # refused only where the heads cannot split the embedding or the sin/cos pairs do not fit
    assert accepted == [e for e in range(200, 251) if e % nhead == 0 and e % 2 == 0]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("optimizer", "adam", "SGD"),
        ("optimizer", "AdamW", "RAdam"),
        ("scheduler", "linear", "cosine"),
        ("precision", "fp8", "bf16"),
        ("bptt", 36, "35"),
        ("batch_size", 32, "20"),
        ("eval_batch_size", 20, "10"),
        ("clip", 1.0, "0.5"),
        ("epochs", 0, "[1, 1000]"),
        ("max_train_batches", 0, "max_train_batches"),
        ("norm_first", 1, "True or False"),
        ("lr", True, "number"),
        ("nlayers", 2.5, "integer"),
    ],
)
def test_other_fields_are_checked(name: str, value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams(**{name: value})
    assert name in str(excinfo.value) and fragment in str(excinfo.value)


def test_weight_decay_too_strong_for_the_lr_is_refused() -> None:
    """The default decay (0.3, tuned for Adam at 5e-3) would take every weight past zero in one step of SGD at lr 5."""
    with pytest.raises(
        ValueError,
        match=r"weight_decay=0.3 at lr=5 shrinks every weight matrix by 150.0% a step.*the default 0.3 is tuned",
    ):
        HParams(optimizer="SGD", lr=5.0)
    with pytest.raises(
        ValueError, match=r"weight_decay=0.1 at lr=5 shrinks every weight matrix by 50.0% a step"
    ):
        HParams(optimizer="SGD", lr=5.0, weight_decay=0.1)
    assert HParams(optimizer="SGD", lr=5.0, weight_decay=0.002).weight_decay == 0.002  # 1% a step: allowed
    # 1% a step, though 0.05 * 0.2 rounds above 0.01 in floats
    assert HParams(lr=0.05, weight_decay=0.2).weight_decay == 0.2
    with pytest.raises(ValueError, match="shrinks every weight matrix by 1.0% a step"):
        HParams(lr=0.0501, weight_decay=0.2)
    with pytest.raises(ValueError, match="weight_decay=0.3 at lr=0.05 shrinks every weight matrix by 1.5%"):
        HParams(lr=0.05)  # the default decay allows a peak lr up to 1/30
    assert HParams(optimizer="SGD", lr=5.0, weight_decay=0.0).weight_decay == 0.0


def test_papermill_style_ints_become_floats() -> None:
    hp = HParams(lr=5, dropout=0, optimizer="SGD", weight_decay=0)
    assert isinstance(hp.lr, float) and hp.lr == 5.0 and isinstance(hp.dropout, float)


def test_from_dict_refuses_unknown_keys_and_round_trips() -> None:
    hp = profile_defaults("full")
    assert HParams.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        HParams.from_dict({**hp.to_dict(), "learning_rate": 0.01})


def test_profiles_are_valid_and_quick_is_small() -> None:
    full, quick = profile_defaults("full"), profile_defaults("quick")
    assert full.max_train_batches is None and full.max_eval_batches is None
    assert quick.max_train_batches is not None and quick.epochs * quick.max_train_batches <= 600
    with pytest.raises(ValueError, match="quick"):
        profile_defaults("medium")


def test_describe_lists_every_hyper_parameter_that_applies() -> None:
    hp = profile_defaults("full")
    text = hp.describe()
    for fragment in ("nn.CrossEntropyLoss()", "torch.optim.Adam(", str(hp.emsize), str(hp.nhid),
                     f"{hp.lr:g}", str(hp.bptt), str(hp.clip), str(hp.seed), "(norm_first=",
                     "inverse square root", "warm-up over 100 batches", "betas=(0.9, 0.999)"):  # fmt: skip
        assert fragment in " ".join(text.split()), fragment
    assert "Adam with decoupled weight decay (the AdamW form)" in text  # the form that ran, named
    assert "gamma" not in text  # StepLR's gamma does not apply to the inverse square-root schedule
    assert "draft run" not in text and "tied" not in text
    assert "decoder weights              : tied to the embedding" in HParams(tie_weights=True).describe()
    assert all(len(line) <= 100 for line in text.splitlines())  # wrapped to the notebook's width
    assert "pre (norm_first=True)" in HParams(norm_first=True).describe()
    assert "post (norm_first=False)" in HParams(norm_first=False).describe()


def test_describe_leaves_out_what_does_not_apply_and_adds_what_ran() -> None:
    sgd = HParams(optimizer="SGD", lr=1.0, weight_decay=0.0, scheduler="step", cooldown=0.0, warmup_batches=0)
    text = sgd.describe()
    assert "betas" not in text and "decoupled" not in text and "weight decay applies" not in text
    assert "x0.95 after every epoch (StepLR, gamma=0.95)" in text and "warm-up" not in text
    coupled = HParams(decoupled_weight_decay=False).describe()
    assert "Adam with L2 weight decay" in coupled and "AdamW" not in coupled
    run = {"device": "cuda:0", "device_name": "NVIDIA H200", "precision": "bf16 autocast",
           "precision_why": "precision = 'auto' and this GPU computes in bf16"}  # fmt: skip
    ran = HParams(max_train_batches=150, max_eval_batches=60).describe(run)
    assert "cuda:0 (NVIDIA H200)" in ran and "bf16 autocast (precision = 'auto'" in ran
    assert "150 training batches per epoch, 60 batches of valid/test evaluated" in ran
