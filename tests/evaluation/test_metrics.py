import numpy as np
import pytest

from destseg.evaluation.metrics import (
    all_background,
    average_precision,
    confusion_matrix,
    foreground_precision_recall,
    iou_per_class,
    multilabel_scores,
    per_class_table,
    segmentation_scores,
)


def test_confusion_matrix_by_hand_with_ignore():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    expected = np.array(
        [
            [1, 1, 0],  # gt 0: one right, one called 1
            [0, 1, 1],  # gt 1: one right, one called 2
            [0, 0, 1],  # gt 2: right; the 255 pixel is not counted
        ]
    )
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 3), expected)


def test_prediction_255_is_not_counted():
    gt = np.array([0, 1, 1])
    pred = np.array([0, 255, 1])
    assert confusion_matrix(gt, pred, 2).sum() == 2


def test_iou_and_miou_by_hand_with_absent_class():
    confusion = np.array(
        [
            [3, 1, 0, 0],
            [1, 2, 0, 0],
            [0, 0, 0, 0],  # class 2 absent from ground truth and prediction
            [0, 1, 0, 0],  # class 3 present, never predicted
        ]
    )
    iou = iou_per_class(confusion)
    np.testing.assert_allclose(iou[[0, 1, 3]], [3 / 5, 2 / 5, 0.0])
    assert np.isnan(iou[2])
    scores = segmentation_scores(confusion)
    assert scores["miou"] == pytest.approx((3 / 5 + 2 / 5 + 0) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["mean_class_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 0) / 3)


def test_accumulating_over_images_equals_one_big_image():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 4, size=(5, 7)) for _ in range(3)]
    preds = [rng.integers(0, 4, size=(5, 7)) for _ in range(3)]
    summed = sum(confusion_matrix(g, p, 4) for g, p in zip(gts, preds, strict=True))
    joined = confusion_matrix(np.concatenate(gts), np.concatenate(preds), 4)
    np.testing.assert_array_equal(summed, joined)


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 3)


def test_foreground_precision_recall_by_hand():
    confusion = np.array([[5, 1, 1], [2, 3, 1], [0, 0, 4]])
    precision, recall = foreground_precision_recall(confusion)
    assert precision == pytest.approx(8 / 10)  # fg predicted 10 times, 8 on fg
    assert recall == pytest.approx(8 / 10)  # 10 fg pixels, 8 called fg


def test_all_background_baseline():
    confusion = np.array([[5, 1], [2, 3]])
    baseline = all_background(confusion)
    np.testing.assert_array_equal(baseline, [[6, 0], [5, 0]])
    assert segmentation_scores(baseline)["miou"] == pytest.approx((6 / 11 + 0) / 2)


def test_average_precision_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    targets = np.array([1, 0, 1, 0])
    assert average_precision(scores, targets) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(average_precision(scores, np.zeros(4)))


def test_multilabel_scores_perfect_and_f1_by_hand():
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    assert multilabel_scores(targets * 0.9, targets) == {"map": 1.0, "f1": 1.0}
    scores = np.array([[0.9, 0.6], [0.1, 0.2], [0.8, 0.7]])
    # predicted {00,01,20,21}, true {00,11,20,21}: tp 3, |pred| 4, |true| 4
    assert multilabel_scores(scores, targets)["f1"] == pytest.approx(6 / 8)


def test_per_class_table():
    table = per_class_table(np.array([[2, 0], [1, 1]]), ["background", "a"])
    assert list(table["class"]) == ["background", "a"]
    np.testing.assert_allclose(table["iou"], [2 / 3, 1 / 2])
    assert list(table["gt_pixels"]) == [2, 2]


def test_the_per_image_table_lists_the_worst_images_first_with_their_classes():
    from destseg.evaluation.metrics import per_image_table

    scores = np.array([[0.5, 0.9], [0.25, 0.8], [0.5, 0.7], [1.0, 1.0]])
    labels = {"a": [1], "b": [1, 2], "c": [], "d": [2]}
    table = per_image_table(["c", "b", "a", "d"], scores, labels, ["background", "cat", "dog"])
    assert list(table["image"]) == ["b", "a", "c", "d"]  # ties (a, c at 0.5) by id
    assert list(table["miou"]) == [0.25, 0.5, 0.5, 1.0]
    assert list(table["pixel_accuracy"]) == [0.8, 0.7, 0.9, 1.0]  # each stays with its image
    assert list(table["classes"]) == ["cat dog", "cat", "", "dog"]
