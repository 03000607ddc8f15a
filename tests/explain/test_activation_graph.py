import numpy as np
import pytest
import tensorflow as tf

from advkeras.attacks import generate
from advkeras.explain.activation_graph import OTHER, build_graph, select_nodes
from advkeras.explain.activation_stats import compare_layers
from advkeras.explain.activation_views import plot_conditions, plot_defense_grid, plot_difference
from advkeras.explain.dense_activations import DenseActivations, dense_activations
from advkeras.models import compose, get_parts


@pytest.fixture(scope="module")
def mnist_acts(mnist_model, mnist_splits):
    x, y = mnist_splits[2].x[:64], mnist_splits[2].y[:64]
    adv = generate(mnist_model, x, y, "fgsm", eps=0.25, backend="native", progress=False).clipped
    return dense_activations(mnist_model, x), dense_activations(mnist_model, adv), x


def test_dense_activations_follow_the_model(mnist_model, mnist_acts):
    clean, _, x = mnist_acts
    cnn, _ = get_parts(mnist_model)
    assert clean.layers == ["input", "dense_1", "dense_2", "logits"]
    np.testing.assert_allclose(clean.values[0], cnn(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(clean.values[-1], mnist_model(x).numpy(), atol=1e-4)
    assert [k.shape for k in clean.kernels] == [(400, 120), (120, 84), (84, 10)]


def test_defended_model_dnn_input_is_what_feeds_it(mnist_model, mnist_splits):
    cnn, dnn = get_parts(mnist_model)
    middle = tf.keras.layers.Dense(400, name="middle")
    defended = compose(cnn, dnn, between=[middle])
    x = mnist_splits[2].x[:8]
    acts = dense_activations(defended, x)
    np.testing.assert_allclose(acts.values[0], middle(cnn(x)).numpy(), atol=1e-5)


def test_graph_reduces_wide_layers_and_keeps_strongest_edges(mnist_acts):
    clean, adv, _ = mnist_acts
    spec = select_nodes([clean, adv], max_nodes=12)
    g = build_graph(clean, spec, edges_per_layer=15)
    per_layer = [sum(1 for n in g.nodes if n[0] == li) for li in range(4)]
    assert per_layer == [13, 13, 13, 10]  # 12 kept + "other" where wider than 12; all 10 logits
    for li in range(3):
        assert sum(1 for u, _ in g.edges if u[0] == li) == 15
    (src, dst), data = next(((u, v), d) for u, v, d in g.edges(data=True) if u[1] != OTHER and v[1] != OTHER)
    expected = clean.values[src[0]][:, src[1]].mean() * clean.kernels[src[0]][src[1], dst[1]]
    assert data["contribution"] == pytest.approx(expected, rel=1e-4)


def test_select_nodes_keeps_a_neuron_only_the_adversarial_condition_uses():
    rng = np.random.default_rng(0)
    clean_vals = rng.uniform(0, 1, (20, 50))
    adv_vals = clean_vals.copy()
    clean_vals[:, 7] = 0
    adv_vals[:, 7] = 5.0
    k = [np.zeros((50, 3))]
    a = DenseActivations(["input", "logits"], [clean_vals, rng.normal(size=(20, 3))], k)
    b = DenseActivations(["input", "logits"], [adv_vals, rng.normal(size=(20, 3))], k)
    assert 7 in select_nodes([a, b], max_nodes=5).nodes[0]
    assert 7 not in select_nodes([a], max_nodes=5).nodes[0]


def test_stats_detect_change_and_handle_different_widths(mnist_acts):
    clean, adv, _ = mnist_acts
    same = compare_layers(clean, clean)
    assert all(r["jaccard_topk"] == 1.0 and r["mean_shift"] == 0.0 for r in same)
    moved = compare_layers(clean, adv)
    assert moved[-1]["mean_shift"] > 0.05 and moved[2]["jaccard_topk"] < 1.0  # top 10 of 84 hidden units
    narrow = DenseActivations(["input"] + clean.layers[1:], [clean.values[0][:, :32]] + clean.values[1:],
                              clean.kernels)
    rows = compare_layers(clean, narrow)
    assert rows[0]["jaccard_topk"] is None and rows[0]["mean_shift"] is None and rows[1]["mean_shift"] == 0


def test_figures_are_drawn(mnist_acts, tmp_path):
    import matplotlib.image as mpimg

    clean, adv, _ = mnist_acts
    paths = [plot_conditions({"clean": clean, "FGSM": adv}, tmp_path / "a.png"),
             plot_difference(clean, adv, tmp_path / "b.png", title="FGSM - clean"),
             plot_defense_grid((clean, adv), (clean, adv), tmp_path / "c.png", defense="copy", attack="FGSM")]
    for p in paths:
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img[..., :3].std() > 0.05  # a real picture, not blank


def test_visualize_cli_rejects_a_malformed_defended_option(tmp_path):
    from click.testing import CliRunner

    from advkeras.cli import main

    result = CliRunner().invoke(main, ["visualize", "--model", "m.keras", "--defended", "no-equals-sign",
                                       "--out", str(tmp_path / "v")])
    assert result.exit_code != 0 and "NAME=PATH" in result.output
