import json
import re
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from advkeras.defenses.prediction_similarity import build_defended_model
from advkeras.models import build_classifier
from advkeras.serving import export_saved_model, history_state, load_history, save_history, versions

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mnist_splits):
    base = tmp_path_factory.mktemp("saved_models")
    clf = build_classifier("lenet", (28, 28, 1), 10, seed=0)
    defended = build_defended_model(clf, threshold=0.05, min_matches=1, action="flag")  # the default index store
    first = export_saved_model(defended, base, "digits")
    x = mnist_splits[2].x[:6]
    np.save(base / "x.npy", x)
    np.save(base / "probs.npy", tf.nn.softmax(clf(x)).numpy())
    return base, first, defended


def test_export_twice_makes_versions_1_and_2_without_touching_1(exported):
    base, first, defended = exported
    assert first == base / "digits" / "1" and (first / "saved_model.pb").is_file()
    before = (first / "saved_model.pb").read_bytes()
    second = export_saved_model(defended, base, "digits")
    assert second == base / "digits" / "2" and versions(base, "digits") == [1, 2]
    assert (first / "saved_model.pb").read_bytes() == before
    meta = json.loads((second / "assets.extra" / "advkeras.json").read_text())
    assert meta["input_shape"] == [28, 28, 1] and "alarm" in meta["outputs"]


FRESH = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    base = sys.argv[1]
    m = tf.saved_model.load(base + "/digits/1")
    f = m.signatures["serving_default"]
    x = np.load(base + "/x.npy"); p = np.load(base + "/probs.npy")
    out = f(image=tf.constant(x), user_id=tf.constant(["u%d" % i for i in range(len(x))]))
    assert np.abs(out["probabilities"].numpy() - p).max() < 1e-5, "probabilities differ"
    assert not out["alarm"].numpy().any(), "first queries of new users must not alarm"
    alarms = []
    for step in range(4):  # a repeated-query attacker: the same image with tiny changes
        xa = np.clip(x[:1] + 0.002 * step, 0, 1).astype("float32")
        alarms.append(bool(f(image=tf.constant(xa), user_id=tf.constant(["attacker"]))["alarm"].numpy()[0]))
    assert alarms == [False, True, True, True], alarms
    try:
        f(image=tf.zeros([1, 32, 32, 1]), user_id=tf.constant(["u"]))
    except tf.errors.InvalidArgumentError as e:
        assert "N x 28 x 28 x 1" in str(e), str(e)
    else:
        raise AssertionError("a wrong image size was accepted")
    print("OK", int(m.state["queries"].numpy()))
""")


def test_fresh_process_loads_same_outputs_and_history_detects_repeats(exported):
    base, _, _ = exported
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", FRESH, str(base)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["OK", "10"]  # 6 + 4 queries counted in the served history


def test_saved_model_cli_show_lists_the_signature(exported):
    base, first, _ = exported
    out = subprocess.run([str(BIN / "saved_model_cli"), "show", "--dir", str(first), "--tag_set", "serve",
                          "--signature_def", "serving_default"], capture_output=True, text=True, timeout=120).stdout
    assert "Method name is: tensorflow/serving/predict" in out
    inputs, outputs = out.split("output(s):")
    assert re.search(r"inputs\['image'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: \(-1, -1, -1, -1\)", inputs)
    assert re.search(r"inputs\['user_id'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)", inputs)
    for name, dtype in (("probabilities", "DT_FLOAT"), ("label", "DT_INT64"), ("alarm", "DT_BOOL"),
                        ("adversarial_probability", "DT_FLOAT"), ("min_distance", "DT_FLOAT")):
        assert re.search(rf"outputs\['{name}'\] tensor_info:\s+dtype: {dtype}", outputs), name


def test_saved_model_cli_run_with_npy_input(exported, tmp_path):
    base, first, _ = exported
    proc = subprocess.run([str(BIN / "saved_model_cli"), "run", "--dir", str(first), "--tag_set", "serve",
                           "--signature_def", "serving_default", "--inputs", f"image={base / 'x.npy'}",
                           "--input_exprs", "user_id=" + repr([f"cli{i}" for i in range(6)]),
                           "--outdir", str(tmp_path), "--overwrite"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probs = np.load(tmp_path / "probabilities.npy")
    np.testing.assert_allclose(probs, np.load(base / "probs.npy"), atol=1e-5)


def test_history_backup_round_trip(exported, tmp_path):
    base, first, _ = exported
    loaded = tf.saved_model.load(str(first))
    f = loaded.signatures["serving_default"]
    x = np.load(base / "x.npy")
    f(image=tf.constant(x[:2]), user_id=tf.constant(["a", "a"]))
    backup = save_history(loaded, tmp_path / "h.npz")
    with pytest.raises(FileExistsError):
        save_history(loaded, backup)
    fresh = tf.saved_model.load(str(first))
    assert history_state(fresh)["queries"] == 0
    load_history(fresh, backup)
    assert history_state(fresh)["queries"] == 2
    near = np.clip(x[1:2] + 0.01, 0, 1)  # a near-copy: identical re-sends never count
    out = fresh.signatures["serving_default"](image=tf.constant(near), user_id=tf.constant(["a"]))
    assert bool(out["alarm"].numpy()[0])  # the restored history recognises the repeat
    assert history_state(fresh)["stored_user"][2] == b"a"  # string state restored without pickle




def test_export_with_encoder_disagreement_and_feature_response(tmp_path, mnist_splits):
    from advkeras.detectors.feature_response import FeatureResponseDetector
    from advkeras.serving.build import export_classifier

    clf = build_classifier("lenet", (28, 28, 1), 10, seed=0)
    encoder = build_classifier("lenet", (28, 28, 1), 10, seed=1)  # stands in for the encoder defense's model
    benign = mnist_splits[1].subset(np.arange(120))
    path, meta = export_classifier(clf, benign, tmp_path, "full", encoder_model=encoder, feature_response=True,
                                   seed=0)
    assert meta["calibration"]["n_users"] > 0 and set(meta["feature_response"]["thresholds"]) >= {"0.05"}
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = mnist_splits[2].x[:16]
    out = serve(image=tf.constant(x), user_id=tf.constant([f"u{i}" for i in range(16)]))
    expected = clf(x).numpy().argmax(1) != encoder(x).numpy().argmax(1)
    assert out["encoder_disagreement"].numpy().tolist() == expected.tolist() and expected.any()
    entropy = FeatureResponseDetector(clf).entropy(x)
    np.testing.assert_allclose(out["feature_response_entropy"].numpy(), entropy, rtol=1e-4, atol=1e-4)


def test_out_of_range_pixels_and_user_id_mismatches_are_refused_and_leave_no_history(exported):
    base, first, _ = exported
    loaded = tf.saved_model.load(str(first))  # a fresh copy: its own, empty history
    serve = loaded.signatures["serving_default"]
    x = np.load(base / "x.npy")
    before = history_state(loaded)
    high, low, nan = x[:1].copy(), x[:1].copy(), x[:1].copy()
    high[0, 14, 14, 0], low[0, 0, 0, 0], nan[0, 3, 3, 0] = 1.01, -0.01, np.nan  # one pixel out of [0, 1]
    for image in (high, low, nan):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"image values must be in \[0, 1\]"):
            serve(image=tf.constant(image), user_id=tf.constant(["eve"]))
    for images, ids in ((x[:2], ["eve"]), (x[:1], ["eve", "eve"])):
        with pytest.raises(tf.errors.InvalidArgumentError, match="one string per image"):
            serve(image=tf.constant(images), user_id=tf.constant(ids))
    after = history_state(loaded)
    assert after.keys() == before.keys() and after["queries"] == 0
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    # The same user's first accepted query is the first one its history sees: no earlier image is near it,
    # although each refused request held (nearly) this very image.
    out = serve(image=tf.constant(x[:1]), user_id=tf.constant(["eve"]))
    assert out["alarm"].numpy().tolist() == [False] and int(history_state(loaded)["queries"]) == 1
    assert out["min_distance"].numpy()[0] > 1e30  # NO_HISTORY: the user had no earlier query
