"""classification_metrics: hand-checkable binary and multiclass cases, string and int labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from include.ml_pipeline.training.metrics import classification_metrics, predicted_labels

# y:        no   yes  yes  no
# P(yes):   0.1  0.8  0.4  0.6   -> predicted: no yes no yes
BINARY_Y = ["no", "yes", "yes", "no"]
BINARY_P_YES = np.array([0.1, 0.8, 0.4, 0.6])
BINARY_PROBA = np.column_stack([1 - BINARY_P_YES, BINARY_P_YES])


def test_binary_string_labels_by_hand():
    m = classification_metrics(BINARY_Y, BINARY_PROBA, ["no", "yes"])
    # AUC: positive/negative pairs (0.8>0.1, 0.8>0.6, 0.4>0.1, 0.4<0.6) -> 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)
    # positive "yes": TP=1 (row 2), FP=1 (row 4), FN=1 (row 3)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    expected_ll = -np.mean(np.log([0.9, 0.8, 0.4, 0.4]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    assert set(m) == {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"}
    assert all(isinstance(v, float) for v in m.values())


def test_binary_positive_class_is_classes_1():
    # Same data, classes in the other order: the positive class is now "no".
    m = classification_metrics(BINARY_Y, BINARY_PROBA[:, ::-1], ["yes", "no"])
    assert m["roc_auc"] == pytest.approx(0.75)  # AUC is symmetric in the label swap
    # positive "no": predicted no at rows 1 and 3; true no at rows 1 and 4
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)


def test_binary_int_labels_and_pandas_input():
    import pandas as pd

    y = pd.Series([0, 1, 1, 0, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, proba, np.array([0, 1]))
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 positive/negative pairs ordered
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 3)


def test_multiclass_perfect_and_macro():
    classes = ["a", "b", "c"]
    y = ["a", "b", "c", "a", "b", "c"]
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.1, 0.8, 0.1],
            [0.1, 0.1, 0.8],
            [0.6, 0.3, 0.1],
            [0.2, 0.5, 0.3],
            [0.2, 0.2, 0.6],
        ]
    )
    m = classification_metrics(y, proba, classes)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(1.0)


def test_multiclass_matches_sklearn_ovr_macro():
    rng = np.random.default_rng(0)
    classes = np.array([3, 7, 9])
    y = rng.choice(classes, 200)
    raw = rng.random((200, 3)) + np.eye(3)[np.searchsorted(classes, y)] * 0.5
    proba = raw / raw.sum(axis=1, keepdims=True)
    m = classification_metrics(y, proba, classes)
    assert m["roc_auc"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    # one wrong prediction of three classes -> macro over all classes
    y3 = np.array([3, 7, 9])
    p3 = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    m3 = classification_metrics(y3, p3, classes)
    assert m3["accuracy"] == pytest.approx(2 / 3)
    assert m3["recall"] == pytest.approx((1 + 0 + 1) / 3)
    assert m3["precision"] == pytest.approx((0.5 + 0 + 1) / 3)


def test_multiclass_with_a_class_absent_from_y_true():
    classes = ["a", "b", "c"]
    y = ["a", "b", "a", "b"]
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.3, 0.6, 0.1]])
    m = classification_metrics(y, proba, classes)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert math.isfinite(m["log_loss"])


def test_single_class_binary_gives_nan_auc_not_an_error():
    m = classification_metrics(["yes", "yes"], [[0.2, 0.8], [0.4, 0.6]], ["no", "yes"])
    assert math.isnan(m["roc_auc"])
    assert m["accuracy"] == 1.0


def test_hard_zero_probabilities_give_finite_log_loss():
    m = classification_metrics(["no", "yes"], [[1.0, 0.0], [1.0, 0.0]], ["no", "yes"])
    assert math.isfinite(m["log_loss"])
    assert m["log_loss"] > 10


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="does not know: maybe"):
        classification_metrics(["yes", "maybe"], [[0.5, 0.5], [0.5, 0.5]], ["no", "yes"])
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(["yes"], [[0.5, 0.5, 0.0]], ["no", "yes"])


def test_predicted_labels_argmax():
    assert predicted_labels([[0.2, 0.8], [0.6, 0.4]], ["no", "yes"]).tolist() == ["yes", "no"]


def test_log_loss_matches_sklearn_for_sorted_classes():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(1)
    classes = np.array(["a", "b", "c"])
    y = rng.choice(classes, 50)
    raw = rng.random((50, 3))
    proba = raw / raw.sum(axis=1, keepdims=True)
    assert classification_metrics(y, proba, classes)["log_loss"] == pytest.approx(
        log_loss(y, proba, labels=classes)
    )
