import numpy as np
import pytest

from advkeras.errors import InputError
from advkeras.evaluation import binary_detection_metrics, detection_metrics, threshold_at_fpr


def test_threshold_keeps_false_positives_at_target():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=10_000)
    for fpr in (0.01, 0.05, 0.10):
        assert abs((clean > threshold_at_fpr(clean, fpr)).mean() - fpr) < 0.002


def test_metrics_separate_good_from_useless_scores():
    rng = np.random.default_rng(1)
    clean, calib = rng.normal(size=2000), rng.normal(size=2000)
    good = detection_metrics(clean, rng.normal(3, 1, 2000), calibration_scores=calib)
    bad = detection_metrics(clean, rng.normal(0, 1, 2000), calibration_scores=calib)
    assert good["auc"] > 0.97 and abs(bad["auc"] - 0.5) < 0.05
    assert good["at_fpr"]["0.05"]["tpr"] > 0.8 and bad["at_fpr"]["0.05"]["tpr"] < 0.1
    assert abs(good["at_fpr"]["0.05"]["fpr"] - 0.05) < 0.02  # held-out FPR near the calibrated target
    with pytest.raises(InputError):
        detection_metrics([], [1.0])


def test_binary_metrics():
    m = binary_detection_metrics([False, False, True, False], [True, True, False])
    assert m["fpr"] == 0.25 and m["tpr"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(5 / 7)


def test_roc_plot_draws_every_curve(tmp_path):
    import matplotlib.image as mpimg

    from advkeras.evaluation.roc_plot import plot_roc

    rng = np.random.default_rng(2)
    path = plot_roc({"good": (rng.normal(size=200), rng.normal(2, 1, 200)),
                     "useless": (rng.normal(size=200), rng.normal(size=200))}, tmp_path / "roc.png", title="t")
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img[..., :3].std() > 0.05
