
import numpy as np
import pytest

from keras_attention.models.mean_average_precision import COCO_THRESHOLDS
from keras_attention.models.mean_average_precision import average_precision
from keras_attention.models.mean_average_precision import mean_average_precision


def _truth(boxes, labels):
    return {"boxes": np.array(boxes, "float64").reshape(-1, 4), "labels": np.array(labels, "int64")}


def _found(boxes, scores, labels):
    return {
        "boxes": np.array(boxes, "float64").reshape(-1, 4),
        "scores": np.array(scores, "float64"),
        "labels": np.array(labels, "int64"),
    }


def _two_images():
    """Two images, two classes (see test_hand_worked_example)."""
    truths = [
        # Image 0: class 0 boxes A and B, class 1 box C.
        _truth([[0, 0, 10, 10], [20, 20, 30, 30], [0, 20, 10, 30]], [0, 0, 1]),
        # Image 1: class 0 box D, class 1 box E.
        _truth([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 1]),
    ]
    found = [
        _found(
            [
                [0, 0, 10, 10],  # class 0, 0.9: A, true positive
                [0, 0, 10, 10],  # class 0, 0.7: A again, a duplicate: false positive
                [100, 100, 110, 110],  # class 1, 0.9: nothing there: false positive
                [0, 20, 10, 26],  # class 1, 0.85: C with IoU 60/100: true positive at 0.5
            ],
            [0.9, 0.7, 0.9, 0.85],
            [0, 0, 1, 1],
        ),
        _found(
            [
                [40, 40, 50, 50],  # class 0, 0.8: nothing there: false positive
                [0, 0, 10, 10],  # class 0, 0.6: D, true positive
                [50, 50, 60, 60],  # class 1, 0.95: E, true positive
            ],
            [0.8, 0.6, 0.95],
            [0, 0, 1],
        ),
    ]
    return found, truths


def test_average_precision_101_points():
    # Recall 0.5 at precision 1, recall 1 at precision 0.5: points 0..0.50
    # (51 of them) read 1, points 0.51..1.00 (50) read 0.5.
    assert average_precision([0.5, 1.0], [1.0, 0.5]) == pytest.approx((51 + 25) / 101)
    # Precision is made non-increasing from the right: [0.5, 1] -> [1, 1].
    assert average_precision([0.5, 1.0], [0.5, 1.0]) == pytest.approx(1.0)
    # Recall stops at 0.5: the 50 points past it count 0.
    assert average_precision([0.25, 0.5], [1.0, 1.0]) == pytest.approx(51 / 101)
    assert average_precision([], []) == 0.0
    with pytest.raises(ValueError, match="`average_precision`: `precision` must have the shape"):
        average_precision([0.5], [1.0, 0.5])


def test_perfect_detector_scores_one():
    found, truths = _two_images()
    perfect = [_found(t["boxes"], np.linspace(1, 0.5, len(t["labels"])), t["labels"]) for t in truths]
    result = mean_average_precision(perfect, truths, num_classes=2, iou_thresholds=COCO_THRESHOLDS)
    assert result["map"] == pytest.approx(1.0)
    np.testing.assert_allclose(result["ap_per_class"], [1.0, 1.0])
    assert set(result["map_per_threshold"]) == {float(t) for t in COCO_THRESHOLDS}
    assert all(v == pytest.approx(1.0) for v in result["map_per_threshold"].values())


def test_shifted_boxes_miss_at_half_iou():
    _, truths = _two_images()
    # Every box moved 4 to the right: IoU = 6 x 10 / (2 x 100 - 60) = 0.43.
    shifted = [_found(t["boxes"] + [4, 0, 4, 0], np.ones(len(t["labels"])), t["labels"]) for t in truths]
    assert mean_average_precision(shifted, truths, 2)["map"] == 0.0
    np.testing.assert_allclose(mean_average_precision(shifted, truths, 2)["ap_per_class"], [0.0, 0.0])
    # The same boxes count at a threshold under 0.43.
    assert mean_average_precision(shifted, truths, 2, iou_thresholds=(0.4,))["map"] == pytest.approx(1.0)


def test_hand_worked_example():
    found, truths = _two_images()
    result = mean_average_precision(found, truths, num_classes=2)
    # Class 0, 3 ground truths (A, B, D). Ranked: 0.9 TP (A), 0.8 FP,
    # 0.7 FP (duplicate of A), 0.6 TP (D).
    #   recall    1/3, 1/3, 1/3, 2/3
    #   precision 1,   1/2, 1/3, 1/2  -> non-increasing: 1, 1/2, 1/2, 1/2
    #   points 0.00..0.33 (34) read 1; 0.34..0.66 (33) reach recall 2/3 and
    #   read 1/2; 0.67..1.00 (34) are past the max recall: 0.
    #   AP = (34 + 33 / 2) / 101 = 50.5 / 101 = 0.5
    ap0 = (34 * 1 + 33 * 0.5) / 101
    # Class 1, 2 ground truths (C, E). Ranked: 0.95 TP (E), 0.9 FP, 0.85 TP (C).
    #   recall    1/2, 1/2, 1
    #   precision 1,   1/2, 2/3  -> non-increasing: 1, 2/3, 2/3
    #   points 0.00..0.50 (51) read 1; 0.51..1.00 (50) read 2/3.
    #   AP = (51 + 50 * 2 / 3) / 101 = 253 / 303
    ap1 = (51 * 1 + 50 * 2 / 3) / 101
    assert ap0 == pytest.approx(0.5) and ap1 == pytest.approx(253 / 303)
    np.testing.assert_allclose(result["ap_per_class"], [ap0, ap1], atol=1e-12)
    assert result["map"] == pytest.approx((ap0 + ap1) / 2)
    assert result["map_per_threshold"] == {0.5: pytest.approx((ap0 + ap1) / 2)}


def test_duplicate_detection_is_a_false_positive():
    truths = [_truth([[0, 0, 10, 10]], [0])]
    once = [_found([[0, 0, 10, 10]], [0.9], [0])]
    twice = [_found([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    assert mean_average_precision(once, truths, 1)["map"] == pytest.approx(1.0)
    # Recall 1 is reached at the first detection: the duplicate's lower
    # precision (1/2) comes after it and does not lower the AP.
    assert mean_average_precision(twice, truths, 1)["map"] == pytest.approx(1.0)
    # With a second, missed ground truth the duplicate is visible: TP, FP;
    # recall 1/2, 1/2; precision 1, 1/2; points 0..0.50 read 1, the rest
    # (past the max recall) 0: AP = 51 / 101. Counted as a TP, the
    # duplicate would give recall 1 and AP 1.
    truths_two = [_truth([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    assert mean_average_precision(twice, truths_two, 1)["map"] == pytest.approx(51 / 101)
    assert mean_average_precision(once, truths_two, 1)["map"] == pytest.approx(51 / 101)


def test_matches_the_unmatched_ground_truth_with_the_highest_iou():
    truths = [_truth([[0, 0, 10, 10], [1, 0, 11, 10]], [0, 0])]
    # First detection: IoU 9.1 / 10.9 = 0.835 with the first box, 9.9 / 10.1
    # = 0.980 with the second: it takes the second. The next one has IoU
    # 8.8 / 11.2 = 0.786 < 0.8 with the first (the second is taken): FP.
    # Recall 1/2, 1/2; precision 1, 1/2: AP = 51 / 101. (Taking the first
    # box that passes would have matched both: AP 1.)
    found = [_found([[0.9, 0, 10.9, 10], [1.2, 0, 11.2, 10]], [0.9, 0.8], [0, 0])]
    assert mean_average_precision(found, truths, 1, iou_thresholds=(0.8,))["map"] == pytest.approx(51 / 101)


def test_class_without_ground_truth_is_left_out():
    found, truths = _two_images()
    base = mean_average_precision(found, truths, num_classes=2)
    extra = [dict(f) for f in found]
    extra[0] = _found(
        np.concatenate([found[0]["boxes"], [[0, 0, 10, 10], [5, 5, 9, 9]]]),
        np.concatenate([found[0]["scores"], [0.99, 0.3]]),
        np.concatenate([found[0]["labels"], [2, 2]]),
    )
    result = mean_average_precision(extra, truths, num_classes=3)
    assert result["map"] == pytest.approx(base["map"])
    assert result["ap_per_class"].shape == (3,)
    np.testing.assert_allclose(result["ap_per_class"][:2], base["ap_per_class"])
    assert np.isnan(result["ap_per_class"][2])
    # Nothing detected of a class that has ground truth: AP 0, counted.
    missing = mean_average_precision([_found([], [], [])] * 2, truths, num_classes=2)
    assert missing["map"] == 0.0
    np.testing.assert_allclose(missing["ap_per_class"], [0.0, 0.0])


def test_ordering_by_score_matters():
    found, truths = _two_images()
    swapped = [dict(f) for f in found]
    # Class 1: the false positive now outranks both true positives:
    # FP, TP, TP: recall 0, 1/2, 1; precision 0, 1/2, 2/3 -> all 2/3.
    swapped[0] = dict(found[0], scores=np.array([0.9, 0.7, 0.99, 0.85]))
    before = mean_average_precision(found, truths, 2)["ap_per_class"]
    after = mean_average_precision(swapped, truths, 2)["ap_per_class"]
    assert before[0] == pytest.approx(after[0])
    assert before[1] == pytest.approx(253 / 303)
    assert after[1] == pytest.approx(2 / 3)


def test_ties_keep_the_input_order():
    truths = [_truth([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    # Equal scores: the FP listed first ranks first: FP, TP -> 1/2 everywhere
    # up to recall 1/2: 51 * 0.5 / 101. Listed second: 51 / 101.
    fp_first = [_found([[90, 90, 99, 99], [0, 0, 10, 10]], [0.5, 0.5], [0, 0])]
    tp_first = [_found([[0, 0, 10, 10], [90, 90, 99, 99]], [0.5, 0.5], [0, 0])]
    assert mean_average_precision(fp_first, truths, 1)["map"] == pytest.approx(25.5 / 101)
    assert mean_average_precision(tp_first, truths, 1)["map"] == pytest.approx(51 / 101)


def test_coco_thresholds_are_stricter():
    assert COCO_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    found, truths = _two_images()
    at_half = mean_average_precision(found, truths, 2)
    coco = mean_average_precision(found, truths, 2, iou_thresholds=COCO_THRESHOLDS)
    assert coco["map"] <= at_half["map"]
    # The C detection (IoU 0.6) is a TP up to 0.6 only, so class 1 drops.
    assert coco["ap_per_class"][1] < at_half["ap_per_class"][1]
    assert coco["ap_per_class"][0] == pytest.approx(at_half["ap_per_class"][0])  # exact boxes
    assert coco["map"] == pytest.approx(np.mean(list(coco["map_per_threshold"].values())))
    assert coco["map_per_threshold"][0.5] == pytest.approx(at_half["map"])


def test_empty_detections_score_zero():
    _, truths = _two_images()
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, "int64")}, _found([], [], [])]
    result = mean_average_precision(empty, truths, 2, iou_thresholds=COCO_THRESHOLDS)
    assert result["map"] == 0.0
    np.testing.assert_allclose(result["ap_per_class"], [0.0, 0.0])


@pytest.mark.parametrize(
    "change, argument, expected",
    [
        ({"num_classes": 0}, "num_classes", "must be a positive integer"),
        ({"num_classes": 2.0}, "num_classes", "must be a positive integer"),
        ({"iou_thresholds": ()}, "iou_thresholds", "must be a non-empty sequence of numbers in \\(0, 1\\]"),
        ({"iou_thresholds": (0.5, 1.5)}, "iou_thresholds", "must be a non-empty sequence"),
        ({"detections": {"boxes": []}}, "detections", "must be a list with one dict per image"),
        ({"ground_truths": "truth"}, "ground_truths", "must be a list with one dict per image"),
        ({"drop": "ground_truths"}, "ground_truths", "must have one entry per image of detections \\(2\\)"),
        ({"detection_key": "scores"}, "detections", "must hold dicts with keys"),
        ({"detection_boxes": np.zeros((3, 3))}, "detections\\['boxes'\\]", "must have shape \\(K, 4\\)"),
        ({"detection_labels": [0, 0, 1, 2]}, "detections\\['labels'\\]", "must be integers in \\[0, num_classes=2\\)"),
        ({"detection_scores": [0.9, 0.5]}, "detections", "must have as many boxes, scores and labels"),
        ({"truth_labels": [0, -1, 1]}, "ground_truths\\['labels'\\]", "must be integers"),
    ],
)
def test_bad_arguments_raise_clear_errors(change, argument, expected):
    found, truths = _two_images()
    kwargs = {"detections": found, "ground_truths": truths, "num_classes": 2}
    if "drop" in change:
        kwargs["ground_truths"] = truths[:1]
    elif "detection_key" in change:
        del found[1][change["detection_key"]]
    elif "detection_boxes" in change:
        found[0]["boxes"] = change["detection_boxes"]
    elif "detection_labels" in change:
        found[0]["labels"] = np.array(change["detection_labels"])
    elif "detection_scores" in change:
        found[0]["scores"] = np.array(change["detection_scores"])
    elif "truth_labels" in change:
        truths[0]["labels"] = np.array(change["truth_labels"])
    else:
        kwargs.update(change)
    with pytest.raises(ValueError, match=f"^`mean_average_precision`: `{argument}` {expected}.*Received: ") as info:
        mean_average_precision(**kwargs)
    assert "Received: " in str(info.value)


