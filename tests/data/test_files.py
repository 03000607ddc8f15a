"""Images that stay on disk: decoded only where used, with the same pixels, splits and training as in memory."""
import numpy as np
import pytest
from PIL import Image

from advkeras.data import ImageFiles, load_dataset, load_idc, load_image_folder, load_sample, split_by_group
from advkeras.errors import DataError
from advkeras.models import build_classifier, predict_logits, train_classifier
from advkeras.models.training import make_pipeline


@pytest.fixture(scope="module")
def real_idc_tree(tmp_path_factory):
    """Real patches of the embedded sample written back as a Kaggle-layout tree (6 patients, 20 per class
    folder), plus one slide-edge patch cut to 50x42."""
    root = tmp_path_factory.mktemp("idc")
    ds = load_sample("idc")
    rng = np.random.default_rng(0)
    for patient in np.unique(ds.groups)[:6]:
        for label in (0, 1):
            idx = np.flatnonzero((ds.groups == patient) & (ds.y == label))
            for i in rng.permutation(idx)[:20]:
                folder = root / str(patient) / str(label)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.round(ds.x[i] * 255).astype(np.uint8)).save(folder / ds.meta["files"][i])
    edge = next((root / str(np.unique(ds.groups)[0])).glob("*/*.png"))
    Image.open(edge).crop((0, 0, 50, 42)).save(edge)
    return root


def test_lazy_idc_has_the_pixels_labels_and_patients_of_the_in_memory_load(real_idc_tree):
    eager, lazy = load_idc(real_idc_tree, progress=False), load_idc(real_idc_tree, lazy=True)
    assert lazy.lazy and not eager.lazy and eager.n_padded == 1
    np.testing.assert_array_equal(lazy.y, eager.y)
    np.testing.assert_array_equal(lazy.groups, eager.groups)
    np.testing.assert_array_equal(np.asarray(lazy.x), eager.x)  # padded patch included
    idx = np.array([5, 0, 17])
    np.testing.assert_array_equal(lazy.x[idx], eager.x[idx])
    np.testing.assert_array_equal(lazy.x[3], eager.x[3])
    # tf.data's decoder gives the same floats as the numpy path, padding included
    decode = lazy.x.decoder()
    for i in range(len(lazy)):
        np.testing.assert_array_equal(decode(lazy.x.paths[i]).numpy(), eager.x[i])


def test_subsets_and_patient_splits_stay_on_disk_and_match(real_idc_tree):
    eager, lazy = load_idc(real_idc_tree, progress=False), load_dataset(real_idc_tree, lazy=True)
    for a, b in zip(split_by_group(eager, seed=0), split_by_group(lazy, seed=0)):
        assert b.lazy and isinstance(b.x, ImageFiles)
        np.testing.assert_array_equal(a.groups, b.groups)
        np.testing.assert_array_equal(a.x, b.in_memory().x)
    assert not lazy.in_memory().lazy


def test_streamed_training_and_prediction_equal_the_in_memory_ones(real_idc_tree):
    eager, lazy = load_idc(real_idc_tree, progress=False), load_idc(real_idc_tree, lazy=True)
    x_pipe = [b[0].numpy() for b in make_pipeline(lazy, batch_size=16, shuffle=True, augment=True, seed=3)]
    e_pipe = [b[0].numpy() for b in make_pipeline(eager, batch_size=16, shuffle=True, augment=True, seed=3)]
    for a, b in zip(x_pipe, e_pipe):  # same order, same augmentation draws
        np.testing.assert_array_equal(a, b)
    models = [build_classifier("vgg_mini", (50, 50, 3), 2, seed=0) for _ in range(2)]
    for model, ds in zip(models, (eager, lazy)):
        train_classifier(model, ds, epochs=1, batch_size=32, seed=0)
    np.testing.assert_allclose(predict_logits(models[0], eager.x), predict_logits(models[1], lazy.x), atol=1e-5)


def test_lazy_folder_checks_sizes_from_headers(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_image_folder(tmp_path, lazy=True, progress=False)
    assert ds.lazy and ds.input_shape == (8, 8, 3) and ds.n_classes == 2
    np.testing.assert_array_equal(ds.in_memory().x, load_image_folder(tmp_path, progress=False).x)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "b" / "odd.png")
    with pytest.raises(DataError, match="odd.png is 8x9 but .* is 8x8"):
        load_image_folder(tmp_path, lazy=True, progress=False)
    with pytest.raises(DataError, match="image_shape"):
        ImageFiles(["x.png"], (8, 8))


def test_assess_on_a_folder_keeps_it_on_disk_and_fits_stages_on_bounded_subsets(real_idc_tree, tmp_path):
    from advkeras.assess import assess, load_config
    from advkeras.assess.context import RunContext

    cfg = load_config(data=str(real_idc_tree), max_eval=24, max_fit=30)
    cfg["train"] = {"epochs": 1, "batch_size": 32, "learning_rate": 0.001}
    cfg["attacks"] = [{"name": "fgsm", "backend": "native", "eps": [0.05]}]
    cfg["defenses"] = {"names": ["middle-ae"], "max_eval": 24, "attacks": ["fgsm"], "new_attack": "fgsm", "eps": 0.05,
                       "eps_grid": [0.05, 0.2], "params": {"middle-ae": {"epochs": 1}}, "sanity_checks": False}
    for stage in ("sanity_checks", "feature_response", "prediction_similarity", "relevant_neurons",
                  "activation_graphs", "adaptive"):
        cfg[stage] = {"enabled": False}
    metrics = assess(tmp_path / "run", config=cfg, seed=0).metrics
    assert metrics["data"]["on_disk"] is True and metrics["data"]["n"] == len(load_idc(real_idc_tree, lazy=True))
    assert metrics["model"]["test"]["accuracy"] is not None
    assert [r["defense"] for r in metrics["defense_summary"]] == ["middle-ae"]
    train = load_idc(real_idc_tree, lazy=True)
    ctx = RunContext(config=cfg, out=tmp_path, seed=0, test=train)
    fit = ctx.fit_set(train)
    assert not fit.lazy and len(fit) == 30 and set(np.unique(fit.y)) == {0, 1}
    assert not ctx.eval_set().lazy and len(ctx.eval_set()) == 24
