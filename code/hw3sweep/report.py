"""A study's report: its trials best first, the chosen configuration as ``[hparams]`` lines, the
figures (matplotlib: they land in PDFs and READMEs as they are) and, once, its test perplexity.

The choice is made on validation only: trials are grouped by configuration (every hyper-parameter
but the seed), the configuration with the lowest mean validation perplexity wins, and its trial with
the default seed (else its best) is the chosen trial. In a time-aware study the configuration with
the fewest training batches whose mean validation perplexity reaches the study's target wins (the
target: given when the study started, else the baseline's, the budget's own settings when it
started); the report shows the Pareto front of perplexity and batches, and how many seeds the chosen
one was run with. Only then is the test split evaluated, for that trial alone, and the result
recorded in the study (``test_evaluations``) so it is never evaluated again: a trial imported from an
earlier record brings the test figure measured then.

Files (``build/sweeps/<study>/`` unless ``--out``): ``report.md``, ``summary.md`` (a few rows for
the README), ``hparams.toml`` (the lines to paste into ``submission.toml``) and ``figures/*.png``;
with ``--out docs/tuning.md``, the other files go to ``docs/tuning/``.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import optuna
from hw3.files import write_atomic
from hw3.hparams import HParams, profile_defaults
from hw3.metrics import perplexity
from hw3tools.studies import HPARAMS_ATTR, SWEEPS_DIR, trial_hparams
from optuna.trial import FrozenTrial, TrialState

from hw3sweep.apply import NOT_APPLIED, applied_settings, toml_lines
from hw3sweep.budgets import get_budget
from hw3sweep.objective import (
    TARGET_ATTR,
    TIME_AWARE_ATTR,
    baseline_params,
    configuration_key,
    describe,
    pareto_front,
    trained_batches,
    validation_ppl,
)

DEFAULT_SEED = HParams().seed
TEST_EVALUATIONS = "test_evaluations"  # study user attribute: every test evaluation, ever
MIXED = "mixed"  # the budget of a study whose trials trained for different lengths (history)
SELECTION_BUDGET = "full"  # in a mixed study, the trials the full profile's default is chosen from
SUMMARY_ROWS = 5


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.1f}" if value < 1e5 else f"{value:.1e}"


def selection_budget(study: optuna.Study) -> str:
    budget = study.user_attrs.get("budget", SELECTION_BUDGET)
    return SELECTION_BUDGET if budget == MIXED else budget


def candidates(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials of the selection budget that a configuration can reproduce."""
    budget = selection_budget(study)
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("budget", budget) == budget
        and HPARAMS_ATTR in t.user_attrs
        and not t.user_attrs.get("variant")
    ]


def is_time_aware(study: optuna.Study) -> bool:
    return bool(study.user_attrs.get(TIME_AWARE_ATTR))


def mean_ppl(group: list[FrozenTrial]) -> float:
    return statistics.fmean(validation_ppl(t) for t in group)


def ranked_configurations(study: optuna.Study) -> list[list[FrozenTrial]]:
    """The candidates grouped by configuration, by mean validation perplexity (best first)."""
    groups: dict[tuple, list[FrozenTrial]] = defaultdict(list)
    for trial in candidates(study):
        groups[configuration_key(trial)].append(trial)
    return sorted(groups.values(), key=lambda g: (mean_ppl(g), g[0].number))


def searched_epochs(study: optuna.Study) -> str:
    """The epochs a time-aware study searches: up to its baseline's."""
    epochs = (baseline_params(study) or {}).get("epochs")
    return f"`epochs` from 1 to {epochs}, the baseline's" if epochs else "`epochs`, up to the baseline's"


def baseline_group(study: optuna.Study) -> list[FrozenTrial]:
    """The candidates with the baseline's settings (any seed)."""
    params = baseline_params(study)
    return [t for t in candidates(study) if params and t.params == params]


def target(study: optuna.Study) -> tuple[float | None, str]:
    """A time-aware study's validation perplexity to reach, and where it comes from."""
    if study.user_attrs.get(TARGET_ATTR) is not None:
        return float(study.user_attrs[TARGET_ATTR]), "given when the study started"
    settings = "the budget's own settings when the study started"
    baseline = baseline_group(study)
    if not baseline:
        return None, f"the baseline ({settings}) has not finished yet"
    numbers = ", ".join(f"#{t.number}" for t in sorted(baseline, key=lambda t: t.number))
    return mean_ppl(baseline), f"the baseline's: {settings}, trial(s) {numbers}"


def chosen_group(study: optuna.Study) -> list[FrozenTrial] | None:
    """The chosen configuration's trials: the best by validation, or in a time-aware study the one
    with the fewest batches that reaches the target (then the lower perplexity)."""
    ranked = ranked_configurations(study)
    if not is_time_aware(study):
        return ranked[0] if ranked else None
    goal, _ = target(study)
    if goal is None:
        return None
    reaching = [g for g in ranked if mean_ppl(g) <= goal + 1e-9]
    return min(reaching, key=lambda g: (trained_batches(g[0]), mean_ppl(g)), default=None)


def chosen_trial(study: optuna.Study) -> FrozenTrial | None:
    """The chosen configuration's trial with the default seed, else its best (None: none)."""
    group = chosen_group(study)
    if not group:
        return None
    default_seed = [t for t in group if t.user_attrs[HPARAMS_ATTR].get("seed") == DEFAULT_SEED]
    return min(default_seed or group, key=validation_ppl)


def show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def differences(trial: FrozenTrial) -> str:
    """The trial's settings that differ from the full profile's defaults, as name=value (the run's
    length left out where a budget set it)."""
    if HPARAMS_ATTR not in trial.user_attrs:
        return ""
    defaults = profile_defaults("full").to_dict()
    hidden = NOT_APPLIED - {"seed"} - ({"epochs"} if trial.user_attrs.get("budget") == "full" else set())
    changed = [
        f"{k}={show(v)}"
        for k, v in trial.user_attrs[HPARAMS_ATTR].items()
        if defaults.get(k) != v and k not in hidden
    ]
    variant = trial.user_attrs.get("variant")
    return ", ".join(changed + ([f"({variant})"] if variant else [])) or "(the full profile)"


def trial_order(trial: FrozenTrial) -> tuple:
    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(trial.state, 2)
    value = validation_ppl(trial)
    value = value if value is not None and math.isfinite(value) else math.inf
    return (rank, value, trial.number)


def trials_table(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    show_budget = len({t.user_attrs.get("budget") for t in trials}) > 1
    show_test = any("judged_on_test" in t.user_attrs for t in trials)
    head = (
        ["trial", "state"]
        + (["budget"] if show_budget else [])
        + ["validation ppl"]
        + (["training batches"] if is_time_aware(study) else [])
        + ["epochs", "duration", "device"]
    )
    head += (["judged on test"] if show_test else []) + ["settings (differences from the full profile)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for trial in sorted(trials, key=trial_order):
        run = trial.user_attrs.get("run", {})
        seconds = trial.duration.total_seconds() if trial.duration else trial.user_attrs.get("train_seconds")
        row = [str(trial.number), trial.state.name.lower()]
        row += [trial.user_attrs.get("budget", "")] if show_budget else []
        row += [fmt(validation_ppl(trial))]
        row += (
            [f"{trained_batches(trial):,}" if trained_batches(trial) else "–"] if is_time_aware(study) else []
        )
        row += [str(len(trial.user_attrs.get("history") or [])),
                f"{seconds / 60:.0f} min" if seconds else "–",
                f"{run.get('device_name', run.get('device', '?'))}, {run.get('precision', '?')}"]  # fmt: skip
        row += ["yes" if trial.user_attrs.get("judged_on_test") else ""] if show_test else []
        row += [differences(trial).replace("|", "/")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def summary_table(study: optuna.Study) -> list[str]:
    """The few best configurations, for the README (with whether each was judged on test before)."""
    if is_time_aware(study):
        return front_table(study)
    judged = any("judged_on_test" in t.user_attrs for t in candidates(study))
    head = "| configuration (differences from the full profile) | validation ppl | trials |"
    lines = [
        head + (" judged on test before |" if judged else ""),
        "|---|---|---|" + ("---|" if judged else ""),
    ]
    for group in ranked_configurations(study)[:SUMMARY_ROWS]:
        group = sorted(group, key=lambda t: t.number)
        values = ", ".join(fmt(validation_ppl(t)) for t in group)
        numbers = ", ".join(f"#{t.number}" for t in group)
        settings = ", ".join(
            part for part in differences(group[0]).split(", ") if not part.startswith("seed=")
        )
        row = f"| {settings or '(the full profile)'} | {values} | {numbers} |"
        if judged:
            row += " yes |" if any(t.user_attrs.get("judged_on_test") for t in group) else " no |"
        lines.append(row)
    return lines


def front_table(study: optuna.Study) -> list[str]:
    """The Pareto front of a time-aware study: its configurations, fewest batches first."""
    goal, _ = target(study)
    lines = ["| training batches | epochs | validation ppl | reaches the target | trials | configuration (differences from the full profile) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    front = {t.number for t in pareto_front(candidates(study))}
    groups = [g for g in ranked_configurations(study) if any(t.number in front for t in g)]
    for group in sorted(groups, key=lambda g: (trained_batches(g[0]), mean_ppl(g))):
        group = sorted(group, key=lambda t: t.number)
        reaches = "–" if goal is None else ("yes" if mean_ppl(group) <= goal + 1e-9 else "no")
        settings = ", ".join(p for p in differences(group[0]).split(", ") if not p.startswith("seed="))
        hp = group[0].user_attrs[HPARAMS_ATTR]
        lines.append(
            f"| {trained_batches(group[0]):,} | {hp['epochs']} | {', '.join(fmt(validation_ppl(t)) for t in group)} "
            f"| {reaches} | {', '.join(f'#{t.number}' for t in group)} | {settings or '(the full profile)'} |"
        )
    return lines


def seeds_note(study: optuna.Study, group: list[FrozenTrial]) -> str:
    """How many seeds the chosen configuration ran with, and the command that adds a second."""
    seeds = sorted({t.user_attrs[HPARAMS_ATTR]["seed"] for t in group})
    if len(seeds) >= 2:
        each = ", ".join(
            f"{fmt(validation_ppl(t))} (seed {t.user_attrs[HPARAMS_ATTR]['seed']}, trial {t.number})"
            for t in sorted(group, key=lambda t: t.number)
        )
        return (f"Confirmed with {len(seeds)} seeds: validation perplexity {each}; their mean, "
                f"{fmt(mean_ppl(group))}, is what reaches the target.")  # fmt: skip
    changes = " ".join(f"{k}={show(v)}" for k, v in changed_settings(study, group[0]).items())
    fixed = " ".join(f"{k}={show(v)}" for k, v in (study.user_attrs.get("fixed") or {}).items())
    finished = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False)
    )
    return (
        f"Run with one seed ({seeds[0]}) so far: not yet confirmed. A second seed: `python -m hw3sweep "
        f"--study {study.study_name} --budget {study.user_attrs.get('budget')} --time-aware"
        + (f" --set {fixed}" if fixed else "")
        + f" --trials {finished + 1} --enqueue seed={seeds[0] + 1}"
        + (f" {changes}" if changes else "")
        + "` (with the same `--storage`)."
    )


def threads_option(trial: FrozenTrial) -> str:
    """``--threads N`` for a re-run on a CPU: the trial's thread count, since a CPU's products sum
    in another order with another count, and the run then drifts as another seed's would."""
    run = trial.user_attrs.get("run") or {}
    return f" --threads {run['threads']}" if run.get("threads") and run.get("device") == "cpu" else ""


def changed_settings(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The trial's searched settings that differ from its budget's own (what --enqueue takes)."""
    fixed = study.user_attrs.get("fixed") or {}
    base = get_budget(trial.user_attrs.get("budget", SELECTION_BUDGET)).base(fixed).to_dict()
    return {k: v for k, v in trial.params.items() if base.get(k) != v}


def test_result(
    study: optuna.Study,
    trial: FrozenTrial,
    data_folder: Path | None,
    evaluate: bool,
    group: list[FrozenTrial] | None = None,
) -> str:
    """The chosen configuration's test perplexity, measured once: recorded with the trial, recorded
    in the study by an earlier report, or evaluated now from this machine's saved weights of the
    chosen trial (or, where they are gone, of another seed's trial of the same configuration,
    ``group``)."""
    if "test_ppl" in trial.user_attrs:
        source = trial.user_attrs.get("source", "its record")
        return (f"{trial.user_attrs['test_ppl']:.1f}, measured once when the run was recorded "
                f"({source}); not used to choose it")  # fmt: skip
    siblings = [trial, *sorted((t for t in group or [] if t.number != trial.number), key=lambda t: t.number)]
    numbers = {t.number for t in siblings}
    for entry in study.user_attrs.get(TEST_EVALUATIONS, []):
        if entry["trial"] in numbers:
            which = "" if entry["trial"] == trial.number else f" (trial {entry['trial']}, another seed)"
            return f"{entry['test_ppl']:.1f}{which}, evaluated once on {entry['at']} after the choice by validation"
    from hw3sweep.worker import weights_path

    weights = weights_path(study.study_name, trial.number)
    source = next((t for t in siblings if weights_path(study.study_name, t.number).is_file()), trial)
    if not evaluate or data_folder is None or not weights_path(study.study_name, source.number).is_file():
        why = (
            "not asked for"
            if not evaluate
            else f"no weights of trial {trial.number} on this machine ({weights})"
        )
        if evaluate and data_folder is None:
            why = "no data folder"
        return (f"not evaluated ({why}); `python -m hw3tools.train --from-study {study.study_name} "
                f"--trial {trial.number}` retrains it and reports it")  # fmt: skip
    loss = evaluate_test(source, weights_path(study.study_name, source.number), data_folder)
    entry = {"trial": source.number, "test_loss": loss, "test_ppl": perplexity(loss),
             "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    study.set_user_attr(TEST_EVALUATIONS, [*study.user_attrs.get(TEST_EVALUATIONS, []), entry])
    which = (
        ""
        if source.number == trial.number
        else f", for trial {source.number} (seed {source.user_attrs[HPARAMS_ATTR]['seed']}): the weights this "
        "machine kept of the chosen configuration"
    )
    return f"{entry['test_ppl']:.1f}, evaluated once now, after the choice by validation{which}"


def evaluate_test(trial: FrozenTrial, weights: Path, data_folder: Path) -> float:
    """Test loss of a trial's saved best weights (the same functions as hw3.train)."""
    import torch
    from hw3.data import load_splits
    from hw3.train import autocast_dtype, build_model, evaluate, resolve_device

    hp = trial_hparams(trial)
    device = resolve_device("auto")
    vocab, _, _, test_data = load_splits(data_folder, hp.batch_size, hp.eval_batch_size, device)
    model = build_model(len(vocab), hp).to(device)
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    amp = autocast_dtype(device, hp.precision)
    return evaluate(model, test_data, hp.bptt, None, amp, hp.max_eval_batches)


def draw_figures(study: optuna.Study, trials: list[FrozenTrial], folder: Path) -> dict[str, str]:
    """Optuna's matplotlib figures of ``trials`` (one budget): name -> file, or the reason none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    if is_time_aware(study):
        return draw_time_aware_figures(study, trials, folder)
    view = optuna.create_study(direction="minimize")  # the trials of one budget, in memory
    view.add_trials([t for t in trials if t.state.is_finished()])
    finished = view.get_trials(deepcopy=False)
    names = sorted({name for t in finished for name in t.params})
    # parameters that took one value only (or that one trial set) say nothing and crowd the axes
    varying = [n for n in names if len({repr(t.params.get(n)) for t in finished}) > 1]
    figures = {
        "optimization_history": plots.plot_optimization_history,
        "parallel_coordinate": lambda s: plots.plot_parallel_coordinate(s, params=varying),
        "param_importances": lambda s: plots.plot_param_importances(s, params=varying),
        "intermediate_values": plots.plot_intermediate_values,
    }
    drawn: dict[str, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, plot in figures.items():
        path = folder / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot(view)
            figure = getattr(axes, "figure", None) or plt.gcf()
            figure.set_size_inches(12 if name == "parallel_coordinate" else 9, 5.5)
            figure.tight_layout()
            save_figure(figure, path)
            drawn[name] = path.name
        except Exception as exc:  # too few trials for this figure: say so in the report
            drawn[name] = f"not drawn ({type(exc).__name__}: {exc})"
        finally:
            plt.close("all")
    return drawn


def save_figure(figure: Any, path: Path) -> None:
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100, metadata={"Software": None}))


def draw_time_aware_figures(study: optuna.Study, trials: list[FrozenTrial], folder: Path) -> dict[str, str]:
    """The Pareto front (Optuna's figure) and every trial's validation perplexity against the
    batches it had trained after each epoch, with the target. Perplexities past 1.5 times the
    target (or the best trial's) are left out of the axes, so a diverged trial does not flatten
    the rest."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    goal, _ = target(study)
    best = min((validation_ppl(t) for t in complete), default=None)
    cap = 1.5 * max(goal or 0.0, best or 0.0)
    floor = 0.95 * min(x for x in (goal, best, cap) if x) if cap else 0.0
    shown = f" (perplexity above {cap:.0f} not shown)" if cap else ""
    drawn: dict[str, str] = {}
    try:
        view = optuna.create_study(directions=["minimize", "minimize"])
        view.add_trials(complete)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = plots.plot_pareto_front(view, target_names=["validation perplexity", "training batches"])
        if cap:
            axes.set_xlim(floor, cap)
            axes.set_title(f"Pareto front{shown}")
        axes.figure.set_size_inches(9, 5.5)
        axes.figure.tight_layout()
        save_figure(axes.figure, folder / "pareto_front.png")
        drawn["pareto_front"] = "pareto_front.png"
    except Exception as exc:  # no complete trial yet: say so in the report
        drawn["pareto_front"] = f"not drawn ({type(exc).__name__}: {exc})"
    finally:
        plt.close("all")
    figure, axes = plt.subplots(figsize=(9, 5.5))
    # one colour a trial (the style's cycle has 7, so a larger study would repeat them); the chosen
    # configuration's trials drawn thicker
    colours = plt.get_cmap("tab20" if len(complete) > 10 else "tab10").colors
    chosen = {t.number for t in chosen_group(study) or []}
    for index, trial in enumerate(complete):
        history = trial.user_attrs.get("history") or []
        per_epoch = trained_batches(trial) / max(1, len(history))
        xs = [per_epoch * (i + 1) for i in range(len(history))]
        label = f"#{trial.number} ({len(history)} epochs)" + (", chosen" if trial.number in chosen else "")
        axes.plot(xs, [row["val_ppl"] for row in history], marker="o", label=label,
                  color=colours[index % len(colours)], linewidth=3 if trial.number in chosen else 1.5)  # fmt: skip
    if goal is not None:
        axes.axhline(goal, color="black", linestyle="--", linewidth=1, label=f"target {goal:.2f}")
    axes.set_xlabel("training batches")
    axes.set_ylabel("validation perplexity")
    axes.set_title(f"Validation perplexity after each epoch{shown}")
    if cap:
        axes.set_ylim(floor, cap)
    if complete:
        axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, folder / "validation_by_batches.png")
    plt.close(figure)
    drawn["validation_by_batches"] = "validation_by_batches.png"
    return drawn


def write_report(
    study: optuna.Study,
    location: str,
    *,
    out: Path | None = None,
    data_folder: Path | None = None,
    evaluate_test: bool = True,
) -> Path:
    """Write the report files; returns the markdown file's path."""
    out = out or SWEEPS_DIR / study.study_name / "report.md"
    figures_dir = out.parent / (out.stem if out.name != "report.md" else "figures")
    trials = study.get_trials(deepcopy=False)
    budget = selection_budget(study)
    pool = [t for t in trials if t.user_attrs.get("budget", budget) == budget]
    chosen = chosen_trial(study)
    states = {
        s.name.lower(): sum(t.state == s for t in trials)
        for s in TrialState
        if any(t.state == s for t in trials)
    }
    command = f"invoke sweep --report --study {study.study_name}" + (
        f" --args '--out {out}'" if out.name != "report.md" else ""
    )
    lines = [f"# Study `{study.study_name}`", "", f"Generated by `{command}` from the study itself.", ""]
    lines += [f"Storage: `{location}`. Objective: {describe(is_time_aware(study))}; "
              f"the test split plays no part in the choice. Trials: {len(trials)} "
              f"({', '.join(f'{n} {s}' for s, n in states.items())}).", ""]  # fmt: skip
    if study.user_attrs.get("budget") == MIXED:
        lines += [f"Trials of several lengths: the choice is among the `{budget}` ones "
                  f"({get_budget(budget).description}).", ""]  # fmt: skip
    else:
        lines += [f"Budget `{budget}`: {get_budget(budget).description}"
                  + (f"; the run's length is searched ({searched_epochs(study)})." if is_time_aware(study) else "."), ""]  # fmt: skip
    if is_time_aware(study):
        goal, source = target(study)
        lines += [f"Target: validation perplexity {fmt(goal) if goal else '–'} ({source}). The choice: the configuration "
                  "with the fewest training batches whose validation perplexity (mean over its seeds) reaches it.", ""]  # fmt: skip
    if chosen is None:
        lines += ["No complete trial reaches the target yet: nothing to choose." if is_time_aware(study)
                  else "No complete trial yet: nothing to choose.", ""]  # fmt: skip
        settings: dict[str, Any] = {}
    else:
        settings = applied_settings(chosen)
        group = chosen_group(study) or [chosen]
        same = [t.number for t in group if t.number != chosen.number]
        if is_time_aware(study):
            baseline = baseline_group(study)
            batches, epochs = trained_batches(chosen), chosen.user_attrs[HPARAMS_ATTR]["epochs"]
            if chosen in baseline:
                why = (f"in {batches:,} training batches, {epochs} epochs: the baseline itself; no trial with "
                       f"fewer batches reaches it, of {len(candidates(study))} complete `{budget}` trials")  # fmt: skip
            else:
                ratio = f", {batches / trained_batches(baseline[0]):.2f}x the baseline's" if baseline else ""
                why = (f"in {batches:,} training batches, {epochs} epochs{ratio}: the fewest of the "
                       f"{len(candidates(study))} complete `{budget}` trials that reach the target")  # fmt: skip
        else:
            why = f"best of {len(candidates(study))} complete `{budget}` trials, by configuration"
        lines += ["## The chosen configuration", "",
                  f"Trial {chosen.number}: validation perplexity {fmt(validation_ppl(chosen))} ({why}"
                  + (f"; the same configuration: trial(s) {', '.join(map(str, same))}" if same else "") + ").",
                  f"Settings: {differences(chosen)}.", "",
                  *([seeds_note(study, group), ""] if is_time_aware(study) else []),
                  f"**Test perplexity**: {test_result(study, chosen, data_folder, evaluate_test, group)}.", "",
                  f"Re-run it exactly: `python -m hw3tools.train --from-study {study.study_name} --trial {chosen.number}"
                  + threads_option(chosen) + "`.", "",
                  "Its `[hparams]` lines for `submission.toml` (`invoke sweep --apply` writes them, keeping the comments):",
                  "", "```toml", *(toml_lines(settings) or ["# none: the full profile's defaults are this configuration"]),
                  "```", ""]  # fmt: skip
    judged = [t for t in trials if t.user_attrs.get("judged_on_test")]
    if judged:
        lines += ["## Judged on test before this study", "",
                  f"{len(judged)} trials were compared on test perplexity when they were recorded, which made "
                  f"the test split a tuning set for them: {', '.join(f'#{t.number}' for t in judged)}. "
                  "They are kept for the record; the choice above uses their validation figures only.", ""]  # fmt: skip
    figures = draw_figures(study, pool, figures_dir)
    lines += ["## Figures", ""]
    for name, file in figures.items():
        title = name.replace("_", " ")
        relative = f"{figures_dir.name}/{file}"
        lines += [f"![{title}]({relative})" if file.endswith(".png") else f"- {title}: {file}", ""]
    best = (
        "## The Pareto front (perplexity and batches)" if is_time_aware(study) else "## Best configurations"
    )
    lines += [best, "", *summary_table(study), "", "## Every trial, best first", "",
              *trials_table(study, trials), ""]  # fmt: skip
    write_atomic(out, "\n".join(lines))
    extras = out.parent if out.name == "report.md" else figures_dir
    write_atomic(extras / "summary.md", "\n".join(summary_table(study)) + "\n")
    write_atomic(extras / "hparams.toml", "\n".join(["[hparams]", *toml_lines(settings)]) + "\n")
    print(
        f"report: {out}"
        + (
            f" (chosen: trial {chosen.number}, validation ppl {fmt(validation_ppl(chosen))})"
            if chosen
            else ""
        )
    )
    return out
