"""Prediction similarity: metrics against scikit-image, the stateful layer, actions, persistence, threads."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from advkeras.defenses.prediction_similarity import (NO_HISTORY, PredictionSimilarity, build_defended_model,
                                                     calibrate_threshold, mse, psnr, query, serving_function,
                                                     similarity_layer, ssim, thumbnail)
from advkeras.errors import InputError
from advkeras.models import build_classifier

THRESHOLD = 2e-4  # thumbnail MSE; far below what two different IDC patches give (~1e-3 and up)


@pytest.fixture(scope="module")
def classifier(idc_splits):
    return build_classifier("vgg_mini", idc_splits[0].input_shape, 2, seed=0)


@pytest.fixture(scope="module")
def patches(idc_splits):
    return idc_splits[2].x[:40]


def _defended(classifier, **kw):  # the ring store (the index store has its own tests)
    kw.setdefault("store", "ring")
    kw.setdefault("threshold", THRESHOLD)
    kw.setdefault("n_slots", 32)
    kw.setdefault("history", 8)
    return build_defended_model(classifier, **kw)


def test_ssim_mse_psnr_match_skimage_on_real_patches(patches):
    a, b = patches[:6], patches[6:12]
    for i in range(6):
        want = structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0)
        assert abs(float(ssim(a[i], b[i])) - want) < 1e-3
        noisy = np.clip(a[i] + np.random.default_rng(i).normal(0, 0.02, a[i].shape), 0, 1).astype(np.float32)
        assert abs(float(ssim(a[i], noisy)) - structural_similarity(a[i], noisy, channel_axis=-1,
                                                                    data_range=1.0)) < 1e-3
        assert float(mse(a[i], b[i])) == pytest.approx(mean_squared_error(a[i], b[i]), rel=1e-4)
        assert float(psnr(a[i], b[i])) == pytest.approx(peak_signal_noise_ratio(a[i], b[i], data_range=1.0), rel=1e-4)
    # on the thumbnails the layer compares too, and batched with broadcasting
    ta, tb = thumbnail(a, 16).numpy(), thumbnail(b, 16).numpy()
    got = ssim(ta[:, None], tb[None]).numpy()  # 6 x 6
    want = np.array([[structural_similarity(ta[i], tb[j], channel_axis=-1, data_range=1.0) for j in range(6)]
                     for i in range(6)])
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_repeated_query_alarms_only_for_the_same_user(classifier, patches):
    model = _defended(classifier)
    first = query(model, patches[:1], "eve")
    assert not first["alarm"][0] and first["min_distance"][0] == NO_HISTORY
    near = np.clip(patches[:1] + 1 / 255, 0, 1)
    again = query(model, near, "eve")
    assert again["alarm"][0] and again["distance_alarm"][0] == 1 and again["min_distance"][0] < THRESHOLD
    assert again["adversarial_probability"][0] == 1.0
    other_user = query(model, near, "bob")
    assert not other_user["alarm"][0]
    # different patches of the same user do not alarm
    out = query(model, patches[10:20], "carol")
    assert not out["alarm"].any()
    layer = similarity_layer(model)
    assert int(layer.queries.numpy()) == 13 and int(layer.alarms.numpy()) == 1


def test_prediction_alarm_counts_confidence_drops(classifier, patches):
    model = _defended(classifier)
    x = patches[:1]
    p0 = query(model, x, "eve")["probabilities"][0]
    top = int(np.argmax(p0))
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        logit = tf.nn.log_softmax(classifier(xt))[0, top]
    sign = np.sign(tape.gradient(logit, xt).numpy())
    down = np.clip(x - 0.5 / 255 * sign, 0, 1).astype(np.float32)  # the top class loses probability
    up = np.clip(x + 0.5 / 255 * sign, 0, 1).astype(np.float32)
    out_up = query(model, up, "eve")
    assert out_up["alarm"][0] and out_up["probabilities"][0, top] > p0[top]
    assert out_up["prediction_alarm"][0] == 0
    out_down = query(model, down, "eve")  # compared with both earlier queries, both had a higher p[top]
    assert out_down["probabilities"][0, top] < p0[top]
    assert out_down["distance_alarm"][0] == 2 and out_down["prediction_alarm"][0] == 2
    # alarm_on="confidence_drop": the close query that raised confidence is let through, the one that lowered it
    # is not; drop_margin sets by how much it must have fallen
    for margin, expected in ((0.0, True), (1.0, False)):
        strict = _defended(classifier, alarm_on="confidence_drop", drop_margin=margin)
        query(strict, x, "eve")
        assert not query(strict, up, "eve")["alarm"][0]
        assert query(strict, down, "eve")["alarm"][0] == expected
    with pytest.raises(InputError, match="alarm_on"):
        _defended(classifier, alarm_on="nope")


def test_actions_flag_flip_block(classifier, patches):
    x = patches[:1]
    for action in ("flag", "flip", "block"):
        model = _defended(classifier, action=action)
        clean = query(model, x, "eve")
        out = query(model, x, "eve")
        assert out["alarm"][0]
        if action == "flag":
            np.testing.assert_allclose(out["probabilities"], clean["probabilities"], atol=1e-6)
            assert out["label"][0] == clean["label"][0]
        elif action == "flip":
            assert out["label"][0] == 1 - clean["label"][0]
            np.testing.assert_allclose(out["probabilities"][0], clean["probabilities"][0][::-1], atol=1e-6)
        else:
            assert out["label"][0] == -1
            np.testing.assert_allclose(out["probabilities"][0], [0.5, 0.5])


def test_history_is_a_bounded_ring_buffer(classifier, patches):
    model = _defended(classifier, history=4)
    query(model, patches[:1], "eve")
    for i in range(1, 5):  # four other patches push the first one out
        query(model, patches[i:i + 1], "eve")
    assert not query(model, patches[:1], "eve")["alarm"][0]
    assert query(model, patches[4:5], "eve")["alarm"][0]  # still remembered
    # a batch with more rows of one user than the history keeps its last rows
    model = _defended(classifier, history=4)
    query(model, patches[:6], "eve")
    out = query(model, patches[:6], "eve")
    np.testing.assert_array_equal(out["alarm"], [False, False, True, True, True, True])


def test_global_scope_catches_one_attacker_with_many_ids(classifier, patches):
    x = patches[:1]
    near = [np.clip(x + k / 255, 0, 1) for k in range(4)]
    per_user, shared = _defended(classifier, scope="user"), _defended(classifier, scope="global", history=16)
    for k, xi in enumerate(near):
        alarm_user = query(per_user, xi, f"sybil-{k}")["alarm"][0]
        alarm_global = query(shared, xi, f"sybil-{k}")["alarm"][0]
        assert not alarm_user
        assert alarm_global == (k > 0)


def test_state_roundtrip_and_reset(classifier, patches):
    model = _defended(classifier)
    query(model, patches[:3], ["a", "b", "a"])
    layer = similarity_layer(model)
    state = layer.get_state()
    assert state["queries"] == 3 and state["slot_queries"].sum() == 3
    other = _defended(classifier)
    similarity_layer(other).set_state(state)
    assert query(other, patches[2:3], "a")["alarm"][0]
    layer.reset_state()
    assert layer.get_state()["queries"] == 0 and float(layer.threshold.numpy()) == pytest.approx(THRESHOLD)
    assert not query(model, patches[2:3], "a")["alarm"][0]
    with pytest.raises(InputError, match="shape"):
        _defended(classifier, history=4).layers[-1].set_state(state)


def test_concurrent_calls_lose_no_count(classifier, patches):
    model = _defended(classifier, n_slots=8)
    serve = serving_function(model)
    serve(patches[:1], tf.constant(["warm-up"]))  # trace once before the threads start
    layer = similarity_layer(model)
    layer.reset_state()
    n_threads, calls, batch = 4, 15, 3

    def worker(t):
        for c in range(calls):
            rows = patches[(t * 7 + c) % 30:(t * 7 + c) % 30 + batch]
            serve(rows, tf.constant([f"user-{t}-{r}" for r in range(batch)]))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = n_threads * calls * batch
    assert int(layer.queries.numpy()) == total
    assert int(layer.slot_queries.numpy().sum()) == total
    assert int(layer.ring_writes.numpy().sum()) == total


def test_keras_file_keeps_history(classifier, patches, tmp_path):
    model = _defended(classifier, action="flip")
    query(model, patches[:2], "eve")
    path = tmp_path / "defended.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path, compile=False)
    layer = similarity_layer(loaded)
    assert layer.get_config()["action"] == "flip" and int(layer.queries.numpy()) == 2
    assert query(loaded, patches[1:2], "eve")["alarm"][0]
    assert not query(loaded, patches[1:2], "mallory")["alarm"][0]


SCRIPT = """
import json, sys
import numpy as np, tensorflow as tf
x = np.load(sys.argv[2])
m = tf.saved_model.load(sys.argv[1])
f = m.signatures["serving_default"]
eve = f(image=tf.constant(x), user_id=tf.constant(["eve"]))
bob = f(image=tf.constant(x), user_id=tf.constant(["bob"]))
print(json.dumps({"keys": sorted(eve), "eve": bool(eve["alarm"].numpy()[0]), "bob": bool(bob["alarm"].numpy()[0]),
                  "eve_d": float(eve["min_distance"].numpy()[0])}))
"""


def test_savedmodel_in_a_fresh_process_keeps_history_and_detects(classifier, patches, tmp_path):
    model = _defended(classifier)
    query(model, patches[:1], "eve")
    path = tmp_path / "saved"
    tf.saved_model.save(model, str(path), signatures={"serving_default": serving_function(model)})
    near = np.clip(patches[:1] + 1 / 255, 0, 1).astype(np.float32)
    np.save(tmp_path / "x.npy", near)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(tmp_path / "x.npy")], capture_output=True,
                          text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["keys"] == ["adversarial_probability", "alarm", "label", "min_distance", "probabilities"]
    assert got["eve"] and not got["bob"] and got["eve_d"] < THRESHOLD


def test_calibration_sets_threshold_from_benign_sessions(classifier, idc_splits):
    val = idc_splits[1]
    model = _defended(classifier, threshold=None, n_slots=64)
    sessions = {f"u{i}": val.x[i * 5:(i + 1) * 5] for i in range(10)}
    cal = calibrate_threshold(model, sessions, target_fpr=0.1, progress=False)
    layer = similarity_layer(model)
    assert float(layer.threshold.numpy()) == pytest.approx(cal.threshold) and cal.threshold > 0
    assert cal.user_fpr <= 0.1 and cal.n_users == 10 and cal.n_queries == 50
    scores = np.array(list(cal.user_scores.values()))
    assert (scores < cal.threshold).mean() <= 0.1 and (scores <= cal.threshold).any()
    assert int(layer.queries.numpy()) == 0  # calibration leaves no history
    assert query(model, val.x[:1], "x")["alarm"].sum() == 0
    assert query(model, val.x[:1], "x")["alarm"][0]  # a repeat is far below any benign distance


def test_bad_arguments_raise_clear_errors(classifier):
    with pytest.raises(InputError, match="metric"):
        PredictionSimilarity(metric="l1")
    with pytest.raises(InputError, match="action"):
        PredictionSimilarity(action="ban")
    with pytest.raises(InputError, match="scope"):
        PredictionSimilarity(scope="world")
    with pytest.raises(InputError, match="SSIM"):
        PredictionSimilarity(metric="ssim", representation="spectrum")
    with pytest.raises(InputError, match="one per image"):
        query(_defended(classifier), np.zeros((2, 50, 50, 3), np.float32), ["a", "b", "c"])


def test_spectrum_representation_ignores_shifts_and_noise(classifier, patches):
    from advkeras.defenses.prediction_similarity.metrics import spectrum

    x, other = patches[:1], patches[20:21]
    rng = np.random.default_rng(0)
    moved = np.clip(np.roll(x, (2, -2), axis=(1, 2)) + rng.uniform(-16 / 255, 16 / 255, x.shape), 0, 1)
    s = [spectrum(thumbnail(v.astype(np.float32), 16), 13).numpy() for v in (x, moved, other)]
    d_moved, d_other = float(mse(s[0], s[1])), float(mse(s[0], s[2]))
    assert d_moved < d_other / 5
    t = [thumbnail(v.astype(np.float32), 16).numpy() for v in (x, moved)]
    assert float(mse(t[0], t[1])) > 10 * THRESHOLD  # the shifted copy dodges the plain thumbnail ...
    model = _defended(classifier, representation="spectrum", threshold=np.sqrt(d_moved * d_other))
    query(model, x, "eve")
    assert query(model, moved.astype(np.float32), "eve")["alarm"][0]  # ... but not the spectrum
    assert not query(model, other, "eve")["alarm"][0]


def test_full_size_ssim_matches_skimage_through_the_layer(classifier, patches):
    """representation="full" (the paper's setting) compares whole images, every channel, with SSIM."""
    model = _defended(classifier, representation="full", metric="ssim", threshold=0.05)
    a, near = patches[:1], np.clip(patches[:1] + np.random.default_rng(0).uniform(-2 / 255, 2 / 255, patches[:1].shape),
                                   0, 1).astype(np.float32)
    assert query(model, a, "eve")["min_distance"][0] == NO_HISTORY
    out = query(model, near, "eve")
    want = 1 - structural_similarity(a[0], near[0], channel_axis=-1, data_range=1.0)
    assert abs(out["min_distance"][0] - want) < 1e-3 and out["alarm"][0]
    assert not query(model, patches[5:6], "eve")["alarm"][0]  # another patch is far in full-size SSIM
    assert similarity_layer(model).get_state()["history_thumbnails"].shape == (32, 8, 50 * 50 * 3)


def test_one_ring_larger_than_the_run_keeps_every_query_of_each_user(classifier, patches):
    """n_slots=1 with a history above the run's queries: every earlier query of the user is compared (and only
    the user's), whatever other users and the user itself sent in between; a ring of 8 has forgotten it."""
    first = patches[:1]
    near = np.clip(first + 1 / 255, 0, 1).astype(np.float32)
    for history, remembered in ((256, True), (8, False)):
        model = _defended(classifier, n_slots=1, history=history)
        query(model, first, "eve")
        for i in range(1, 31):  # 30 other patches of eve, each after one query of another user
            query(model, patches[i:i + 1], f"bystander-{i}")
            query(model, patches[i:i + 1], "eve")
        assert not query(model, near, "bob")["alarm"][0]  # another user's earlier queries never count
        out = query(model, near, "eve")
        assert out["alarm"][0] == remembered
        if remembered:
            assert out["min_distance"][0] < THRESHOLD and out["distance_alarm"][0] == 1
        assert int(similarity_layer(model).queries.numpy()) == 63
