"""Macro-F1 over the task's label set, accuracy and bootstrap intervals, on cases small enough to do by hand."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from evals.metrics import (
    TaskPredictions,
    TaskScore,
    accuracy,
    bootstrap_interval,
    bootstrap_samples,
    culture_interval,
    culture_means,
    culture_paired_difference,
    invalid_rate,
    macro_f1,
    paired_difference,
    score_task,
)


def noisy(n: int, labels: list[str], error: float, seed: int) -> tuple[list[str], list[str | None]]:
    """Gold labels and predictions that are wrong (another label or invalid) with probability `error`."""
    rng = np.random.default_rng(seed)
    gold = [labels[i] for i in rng.integers(0, len(labels), n)]
    pred = [g if rng.random() > error else [*labels, None][rng.integers(0, len(labels) + 1)] for g in gold]
    return gold, pred


def test_per_class_f1_by_hand():
    # A: tp 1, 2 gold, 1 predicted -> 2*1/(2+1) = 2/3.  B: tp 1, 2 gold, 2 predicted -> 2/4.
    # The invalid answer (None) is a miss for its gold B and nobody's false positive.
    assert macro_f1(["A", "A", "B", "B"], ["A", "B", "B", None], ["A", "B"]) == pytest.approx(
        (2 / 3 + 1 / 2) / 2
    )
    assert accuracy(["A", "A", "B", "B"], ["A", "B", "B", None]) == 0.5
    assert invalid_rate(["A", "B", "B", None]) == 0.25


def test_an_invalid_answer_is_wrong_whatever_string_it_is():
    gold, labels = ["A", "A", "B", "B"], ["A", "B"]
    assert macro_f1(gold, ["A", "B", "B", None], labels) == macro_f1(gold, ["A", "B", "B", "maybe"], labels)
    # ...and worse than any right answer: the invalid item cannot be dropped to flatter the model
    assert macro_f1(gold, ["A", "B", "B", None], labels) < macro_f1(gold, ["A", "B", "B", "B"], labels)


def test_a_label_never_predicted_scores_zero_for_its_class():
    # A: tp 0 -> 0.  B: tp 2, 2 gold, 3 predicted -> 4/5.
    assert macro_f1(["A", "B", "B"], ["B", "B", "B"], ["A", "B"]) == pytest.approx(0.4)


def test_only_the_tasks_labels_are_classes():
    labels = ["A", "B", "C"]
    # C has no gold item and no prediction: it scores 0 and still counts (zero_division=0), so every
    # resample and every model averages over the same three classes.
    assert macro_f1(["A", "B"], ["A", "B"], labels) == pytest.approx(2 / 3)
    # A gold value outside the label set is no class; its item cannot be answered right.
    assert macro_f1(["A", "B", "X"], ["A", "B", "X"], ["A", "B"]) == 1.0
    assert accuracy(["A", "B", "X"], ["A", "B", "X"], ["A", "B"]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_agrees_with_scikit_learn_over_the_given_labels(seed):
    labels = ["0", "1", "2", "3"]
    gold, pred = noisy(57, labels, error=0.5, seed=seed)
    expected = f1_score(
        gold, ["<invalid>" if p is None else p for p in pred], labels=labels, average="macro", zero_division=0
    )
    assert macro_f1(gold, pred, labels) == pytest.approx(expected)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        macro_f1(["A", "B"], ["A"], ["A", "B"])
    with pytest.raises(ValueError, match="no items"):
        macro_f1([], [], ["A"])
    with pytest.raises(ValueError, match="distinct"):
        macro_f1(["A"], ["A"], ["A", "A"])


def test_intervals_hold_the_point_estimate_and_shrink_with_more_items():
    labels = ["HS", "NOT_HS", "OFF"]
    widths = []
    for n in (100, 3000):
        gold, pred = noisy(n, labels, error=0.3, seed=n)
        low, high = bootstrap_interval(gold, pred, labels, samples=500)
        assert low <= macro_f1(gold, pred, labels) <= high
        low_acc, high_acc = bootstrap_interval(gold, pred, labels, accuracy, samples=500)
        assert low_acc <= accuracy(gold, pred) <= high_acc
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # about 1/sqrt(30) as wide


def test_intervals_depend_only_on_the_seed():
    gold, pred = noisy(200, ["A", "B"], error=0.3, seed=1)
    assert bootstrap_interval(gold, pred, ["A", "B"], seed=7) == bootstrap_interval(
        gold, pred, ["A", "B"], seed=7
    )
    assert bootstrap_interval(gold, pred, ["A", "B"], seed=7) != bootstrap_interval(
        gold, pred, ["A", "B"], seed=8
    )


def test_any_metric_can_be_bootstrapped_on_the_same_resamples():
    gold, pred = noisy(300, ["A", "B", "C"], error=0.4, seed=2)
    fast = bootstrap_samples(gold, pred, ["A", "B", "C"], samples=50, seed=3)
    slow = bootstrap_samples(
        gold, pred, ["A", "B", "C"], lambda g, p, labels: macro_f1(g, p, labels), samples=50, seed=3
    )
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_identical_predictions_differ_by_exactly_zero():
    gold, pred = noisy(300, ["A", "B"], error=0.3, seed=3)
    assert paired_difference(gold, pred, list(pred), ["A", "B"]) == (0.0, 0.0, 0.0)


def test_a_better_model_shows_a_positive_difference_whose_interval_excludes_zero():
    labels = ["NOT", "OFF"]
    gold, worse = noisy(1000, labels, error=0.6, seed=4)
    _, better = noisy(1000, labels, error=0.1, seed=4)  # same gold: same seed draws gold first
    diff, low, high = paired_difference(gold, worse, better, labels)
    assert diff == pytest.approx(macro_f1(gold, better, labels) - macro_f1(gold, worse, labels))
    assert 0 < low <= diff <= high


def test_culture_mean_is_unweighted_over_tasks():
    def score(task, culture, model, f1, n):
        return TaskScore(task, culture, model, n, f1, (f1, f1), f1, 0.0)

    scores = [
        score("big", "Arabic", "m", 0.9, 5000),
        score("small", "Arabic", "m", 0.5, 10),
        score("one", "Korean", "m", 0.4, 100),
        score("big", "Arabic", "ft", 0.6, 5000),
    ]
    assert culture_means(scores) == {
        ("m", "Arabic"): pytest.approx(0.7),
        ("m", "Korean"): 0.4,
        ("ft", "Arabic"): 0.6,
    }


def test_culture_interval_and_paired_difference():
    labels = ["0", "1"]
    a, b = [], []
    for i, n in enumerate((80, 400)):
        gold, pred_a = noisy(n, labels, error=0.5, seed=10 + i)
        _, pred_b = noisy(n, labels, error=0.2, seed=10 + i)
        a.append(TaskPredictions(gold, pred_a, labels))
        b.append(TaskPredictions(gold, pred_b, labels))
    mean_a = np.mean([macro_f1(t.gold, t.pred, t.labels) for t in a])
    low, high = culture_interval(a, samples=400)
    assert low <= mean_a <= high
    diff, d_low, d_high = culture_paired_difference(a, b, samples=400)
    assert diff == pytest.approx(np.mean([macro_f1(t.gold, t.pred, labels) for t in b]) - mean_a)
    assert 0 < d_low <= diff <= d_high
    assert culture_paired_difference(a, a, samples=400) == (0.0, 0.0, 0.0)


def test_score_task_collects_what_the_report_shows():
    score = score_task(
        "offensive_detect", "Arabic", "m", ["A", "A", "B", "B"], ["A", "B", "B", None], ["A", "B"]
    )
    assert (score.n, score.accuracy, score.invalid_rate) == (4, 0.5, 0.25)
    assert score.macro_f1 == pytest.approx(7 / 12)
    assert score.ci[0] <= score.macro_f1 <= score.ci[1]
