"""Local spatial entropy and the feature-response detector."""
import numpy as np
import pytest

from advkeras.attacks import generate
from advkeras.detectors.feature_response import (FeatureResponseDetector, grey_levels, local_spatial_entropy,
                                                mean_local_entropy)
from advkeras.detectors.feature_response_plot import plot_feature_responses
from advkeras.errors import InputError
from advkeras.evaluation import detection_metrics


def _window_entropies(values: np.ndarray, window: int, stride: int, distribution) -> np.ndarray:
    """Brute force over every window of every image: -sum p log2 p of `distribution(window values)`."""
    n, h, w = values.shape
    rows, cols = (h - window) // stride + 1, (w - window) // stride + 1
    out = np.zeros((n, rows, cols))
    for k in range(n):
        for i in range(rows):
            for j in range(cols):
                p = distribution(values[k, i * stride:i * stride + window, j * stride:j * stride + window].ravel())
                out[k, i, j] = -(p * np.log2(p)).sum()
    return out


def _entropy_reference(r: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Each window's intensities normalised to sum 1."""
    return _window_entropies(np.abs(r).sum(-1), window, stride,
                             lambda v: v[v > 0] / v.sum() if v.sum() > 0 else v[:0])


@pytest.mark.parametrize("window,stride", [(4, None), (3, 1), (5, 2)])
def test_local_entropy_matches_brute_force(window, stride):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(3, 13, 11, 2)).astype(np.float32) * (rng.random((3, 13, 11, 1)) > 0.4)
    got = local_spatial_entropy(r, window, stride).numpy()
    np.testing.assert_allclose(got, _entropy_reference(r, window, stride or window), atol=2e-4)


def test_local_entropy_extremes():
    uniform = np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(local_spatial_entropy(uniform, 4).numpy(), np.log2(16), rtol=1e-5)
    peaks = np.zeros((1, 8, 8, 1), np.float32)
    peaks[0, ::4, ::4] = 5.0  # one non-zero pixel per window; the other windows' pixels all zero
    np.testing.assert_allclose(local_spatial_entropy(peaks, 4).numpy(), 0.0, atol=1e-5)
    assert mean_local_entropy(np.zeros((2, 8, 8, 1), np.float32), 4).numpy().tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="window"):
        local_spatial_entropy(uniform, 9)


def _histogram_reference(r: np.ndarray, window: int, stride: int, bins: int) -> np.ndarray:
    """Grey levels per image, then each window's normalised histogram."""
    inten = np.abs(r).sum(-1)
    peak = inten.reshape(len(inten), -1).max(1)[:, None, None]
    q = np.minimum(np.floor(inten / np.where(peak > 0, peak, 1) * (bins - 1) + 0.5), bins - 1).astype(int)

    def histogram(v):
        counts = np.bincount(v)
        return counts[counts > 0] / window ** 2

    return _window_entropies(q, window, stride, histogram)


@pytest.mark.parametrize("window,stride,bins", [(4, None, 256), (3, 1, 8), (5, 2, 4)])
def test_histogram_entropy_matches_brute_force(window, stride, bins):
    rng = np.random.default_rng(1)
    r = rng.normal(size=(3, 13, 11, 2)).astype(np.float32) * (rng.random((3, 13, 11, 1)) > 0.4)
    got = local_spatial_entropy(r, window, stride, "histogram", bins).numpy()
    np.testing.assert_allclose(got, _histogram_reference(r, window, stride or window, bins), atol=2e-4)


def test_histogram_entropy_known_values():
    # A flat window is one grey level: 0 bits (the magnitude reading gives it the maximum, log2 16 = 4 bits).
    flat = np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(local_spatial_entropy(flat, 4, distribution="histogram").numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(local_spatial_entropy(flat, 4).numpy(), 4.0, rtol=1e-5)
    # 16 different levels in every 4 x 4 window: a uniform histogram, log2 16 = 4 bits.
    ramp = np.tile(np.arange(16, dtype=np.float32).reshape(4, 4), (2, 2))[None, :, :, None]
    np.testing.assert_allclose(local_spatial_entropy(ramp, 4, distribution="histogram", bins=16).numpy(), 4.0,
                               rtol=1e-5)
    # Half the window at one level, half at another: 1 bit. With 2 bins, values 0..7 fall in bin 0 and 8..15 in 1.
    np.testing.assert_allclose(local_spatial_entropy(ramp, 4, distribution="histogram", bins=2).numpy(), 1.0,
                               rtol=1e-5)
    assert grey_levels(np.zeros((1, 4, 4), np.float32)).numpy().max() == 0.0  # all-zero response: level 0
    with pytest.raises(InputError, match="distribution"):
        local_spatial_entropy(flat, 4, distribution="hist")
    with pytest.raises(InputError, match="bins"):
        local_spatial_entropy(flat, 4, distribution="histogram", bins=1)


def _bits(weights) -> float:
    p = np.asarray(weights, np.float64) / np.sum(weights)
    return float(-(p * np.log2(p)).sum())


def test_window_size_changes_map_shape_and_values():
    # One bright pixel (1.0) in each 4 x 4 block on a dim floor (0.01): the map has (32/w)^2 cells; a 4-window
    # holds 1 peak + 15 floor pixels, an 8-window 4 peaks + 60, so the magnitude entropy grows with the window.
    r = np.full((1, 32, 32, 1), 0.01, np.float32)
    r[0, ::4, ::4] = 1.0
    maps = {w: local_spatial_entropy(r, w).numpy() for w in (2, 4, 8)}
    assert {w: m.shape for w, m in maps.items()} == {2: (1, 16, 16), 4: (1, 8, 8), 8: (1, 4, 4)}
    np.testing.assert_allclose(maps[4], _bits([1.0] + [0.01] * 15), rtol=1e-4)  # 1.07 bits
    np.testing.assert_allclose(maps[8], _bits([1.0] * 4 + [0.01] * 60), rtol=1e-4)  # 3.07 bits
    peaked = np.zeros((16, 16), bool)
    peaked[::2, ::2] = True  # the 2-windows that hold a peak; the others are flat: log2 4 = 2 bits
    np.testing.assert_allclose(maps[2][0][peaked], _bits([1.0, 0.01, 0.01, 0.01]), rtol=1e-4)
    np.testing.assert_allclose(maps[2][0][~peaked], 2.0, rtol=1e-5)
    # The histogram reading sees two grey levels, 1 pixel in 16 at the top one, in both window sizes:
    # the same 0.337 bits, where the magnitude reading moved from 1.07 to 3.07 bits.
    for w in (4, 8):
        np.testing.assert_allclose(local_spatial_entropy(r, w, distribution="histogram").numpy(), _bits([1, 15]),
                                   rtol=1e-5)


@pytest.fixture(scope="module")
def fgsm_digits(mnist_model, mnist_splits):
    _, val, test = mnist_splits
    res = generate(mnist_model, test.x[:120], test.y[:120], "fgsm", eps=0.3, progress=False)
    return val.x[:200], test.x[:120], res.clipped[res.success]


def test_detector_separates_fgsm_digits(mnist_model, fgsm_digits, tmp_path):
    calib, clean, adv = fgsm_digits
    det = FeatureResponseDetector(mnist_model, window=4, fpr=0.05)
    assert det.fit(calib) is det
    assert set(det.thresholds_) == {0.01, 0.05, 0.1} and det.n_calibration_ == len(calib)
    m = detection_metrics(det.score_samples(clean), det.score_samples(adv), calibration_scores=det.calibration_scores_)
    # FGSM scatters the response (higher local entropy): measured AUC 0.954, 85 % flagged at the 5 % threshold,
    # which let through 8.3 % of 120 held-out clean digits (the paper: AUC 0.990)
    assert len(adv) > 50 and m["auc"] > 0.9
    assert det.predict(adv).mean() > 0.7 and det.predict(clean).mean() <= 0.13
    np.testing.assert_allclose(det.decision_function(adv[:5]), det.score_samples(adv[:5]) - det.threshold_, rtol=1e-6)
    assert det.predict(clean, fpr=0.01).mean() <= det.predict(clean, fpr=0.1).mean()
    two = FeatureResponseDetector(mnist_model, window=4, direction="two-sided").fit(calib)
    # the two-sided rule flags entropy far from the clean median either way: measured 55 % of the adversarials
    # and 4 % of held-out clean digits
    assert two.predict(adv).mean() > 0.35 and two.predict(clean).mean() <= 0.13
    path = plot_feature_responses(det, clean[:2], adv[:2], tmp_path / "fr.png", title="fgsm")
    assert path.stat().st_size > 5000


def test_innvestigate_backend_gives_the_same_entropies(mnist_model, fgsm_digits, mnist_innvestigate_worker):
    _, clean, adv = fgsm_digits
    x = np.concatenate([clean[:4], adv[:4]])
    native = FeatureResponseDetector(mnist_model).entropy(x)
    det = FeatureResponseDetector(mnist_model, backend="innvestigate")
    det._innvestigate = mnist_innvestigate_worker  # the session's worker (starting one costs seconds)
    # Local entropy ignores each window's scale, so iNNvestigate's logit-scaled maps score the same.
    np.testing.assert_allclose(det.entropy(x), native, rtol=1e-3)
    assert det._worker() is mnist_innvestigate_worker  # one worker per detector, reused


def test_detector_refuses_bad_use(mnist_model, fgsm_digits):
    calib = fgsm_digits[0]
    with pytest.raises(InputError, match="not fitted"):
        FeatureResponseDetector(mnist_model).predict(calib)
    for kwargs, match in (({"window": 40}, "window"), ({"fpr": 5}, "fpr"), ({"backend": "x"}, "backend"),
                          ({"direction": "up"}, "direction"), ({"method": "lrp"}, "method"),
                          ({"distribution": "hist"}, "distribution"), ({"bins": 1}, "bins")):
        with pytest.raises(InputError, match=match):
            FeatureResponseDetector(mnist_model, **kwargs).fit(calib)
    det = FeatureResponseDetector(mnist_model).fit(calib[:20])
    with pytest.raises(InputError, match="no threshold"):
        det.predict(calib, fpr=0.2)
    with pytest.raises(InputError, match="x_clean"):
        det.fit(calib[:, :10])


def test_assessment_stage_records_detection_and_figures(mnist_model, mnist_splits, tmp_path):
    from advkeras.assess.context import RunContext
    from advkeras.assess.stage_feature_response import stage_feature_response

    train, val, test = mnist_splits
    ctx = RunContext({"max_eval": 100, "feature_response": {"window": 4, "max_calibration": 150,
                                                             "figure_images": 2}}, tmp_path, 0,
                     train=train, val=val, test=test, model=mnist_model)
    ev = ctx.eval_set()
    ctx.adversarials["fgsm@0.3"] = generate(mnist_model, ev.x, ev.y, "fgsm", eps=0.3, progress=False)
    stage_feature_response(ctx)
    fr = ctx.metrics["feature_response"]
    assert fr["n_calibration"] == 150 and set(fr["thresholds"]) == {"0.01", "0.05", "0.1"}
    row = ctx.metrics["detector_summary"][0]
    assert row["detector"] == "feature response" and row["attack"] == "fgsm@0.3" and row["auc"] > 0.8
    res = ctx.adversarials["fgsm@0.3"]  # adversarials: images the attack turned from right to wrong
    assert row["n_clean"] == 100 and row["n_adv"] == int((res.success & (res.pred_clean == res.y)).sum())
    fig = ctx.figures["feature_responses/fgsm_eps0p3"]
    assert (tmp_path / fig["path"]).is_file() and fig["section"] == "feature_responses"


def test_cli_detect_feature_response(mnist_model, tmp_path):
    import json

    from click.testing import CliRunner

    from advkeras.cli import main

    path = tmp_path / "lenet.keras"
    mnist_model.save(path)
    out = tmp_path / "det"
    args = ["detect", "--detector", "feature-response", "--data", "mnist", "--model", str(path), "--attack", "fgsm",
            "--eps", "0.3", "--max-eval", "80", "--window", "4", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "feature response vs fgsm@0.3: AUC" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["feature_response"]["settings"]["window"] == 4
    assert metrics["detector_summary"][0]["n_clean"] == 80
    bad = CliRunner().invoke(main, args[:-2] + ["--attack", "nope", "--out", str(tmp_path / "o2")])
    assert bad.exit_code != 0 and "unknown attack" in bad.output and "Traceback" not in bad.output


def test_entropy_function_exports_to_savedmodel(mnist_model, fgsm_digits, tmp_path):
    import tensorflow as tf

    det = FeatureResponseDetector(mnist_model, window=4)
    module = tf.Module()
    module.entropy = det.entropy_function()
    module.model = det.entropy_function().respond.guided_model
    tf.saved_model.save(module, str(tmp_path / "fr"))
    x = fgsm_digits[1][:4]
    loaded = tf.saved_model.load(str(tmp_path / "fr"))  # keep a reference: it owns the variables
    entropy, logits = loaded.entropy(tf.constant(x))
    np.testing.assert_allclose(entropy.numpy(), det.entropy(x), rtol=1e-4)
    assert entropy.shape == (4,) and logits.shape == (4, 10)
    det.window = 2  # a changed setting is not served from the compiled cache
    assert not np.allclose(det.entropy(x), entropy.numpy())
