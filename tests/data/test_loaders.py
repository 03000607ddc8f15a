import gzip

import numpy as np
import pytest
from PIL import Image

from advkeras.data import (DataError, load_dataset, load_idc, load_image_folder, load_mnist_idx, load_sample,
                           read_idx, split_by_group, split_random)


def _png(path, size=(50, 50), color=(200, 100, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def idc_tree(tmp_path):
    for patient in ("p1", "p2", "p3", "p4"):
        for label in (0, 1):
            for i in range(3):
                _png(tmp_path / patient / str(label) / f"{patient}_idx5_x{i}_y0_class{label}.png")
    _png(tmp_path / "p1" / "1" / "p1_idx5_x9_y9_class1.png", size=(50, 42), color=(10, 20, 30))
    return tmp_path


def test_load_idc_reads_real_layout_and_pads_edge_patches(idc_tree, caplog):
    with caplog.at_level("INFO"):
        ds = load_idc(idc_tree, progress=False)
    assert ds.x.shape == (25, 50, 50, 3) and ds.x.dtype == np.float32
    assert 0 <= ds.x.min() and ds.x.max() <= 1
    assert np.bincount(ds.y).tolist() == [12, 13]
    assert set(ds.groups) == {"p1", "p2", "p3", "p4"}
    assert ds.n_padded == 1 and "padded 1 of 25" in caplog.text
    small = ds.x[np.argmin(ds.x.reshape(25, -1).mean(1))]
    assert np.allclose(small[:42, :, 0], 10 / 255) and np.allclose(small[42:], 1.0)  # white padding below


def test_load_idc_errors_name_the_problem(tmp_path, idc_tree):
    with pytest.raises(DataError, match="does not exist"):
        load_idc(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no IDC images"):
        load_idc(tmp_path / "empty")
    bad = idc_tree / "p2" / "0" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_idc(idc_tree, progress=False)


def test_embedded_idc_sample_is_real_and_balanced():
    ds = load_sample("idc")
    assert 1800 <= len(ds) <= 2500 and ds.input_shape == (50, 50, 3)
    counts = np.bincount(ds.y)
    assert min(counts) / max(counts) > 0.8
    assert len(np.unique(ds.groups)) >= 8
    assert ds.x.std() > 0.05  # real tissue, not a constant


def test_split_by_group_never_shares_a_patient():
    ds = load_sample("idc")
    for seed in (0, 1, 2):
        parts = split_by_group(ds, seed=seed)
        groups = [set(p.groups) for p in parts]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert sum(len(p) for p in parts) == len(ds)
        assert all(len(p) for p in parts)
        assert len(parts[0]) > len(parts[2])


def test_split_by_group_needs_groups_and_enough_of_them(mnist_splits):
    with pytest.raises(DataError, match="no group"):
        split_by_group(mnist_splits[2])
    ds = load_sample("idc")
    two = ds.subset(np.isin(ds.groups, ["8863", "8864"]))
    with pytest.raises(DataError, match="only 2 group"):
        split_by_group(two)


def test_mnist_sample_and_idx_loader(tmp_path):
    ds = load_sample("mnist")
    assert ds.x.shape == (10000, 28, 28, 1) and ds.n_classes == 10
    assert np.bincount(ds.y).min() > 800
    train, val, test = split_random(ds, seed=0)
    assert len(train) + len(val) + len(test) == 10000
    # A user's own IDX files: write a tiny pair and read it back.
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    with gzip.open(tmp_path / "x-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in imgs.shape) + imgs.tobytes())
    with open(tmp_path / "x-labels-idx1-ubyte", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 7]))
    mine = load_dataset(tmp_path)
    assert mine.y.tolist() == [3, 7] and np.allclose(mine.x[0, 0, :3, 0], np.array([0, 1, 2]) / 255)


def test_idx_errors(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "junk")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x01")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(DataError, match="does not exist"):
        load_mnist_idx(tmp_path / "a", tmp_path / "b")


def test_image_folder(tmp_path):
    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        for i in range(2):
            _png(tmp_path / cls / f"{i}.png", size=(32, 32), color=color)
    ds = load_image_folder(tmp_path, progress=False)
    assert ds.class_names == ("cat", "dog") and ds.x.shape == (4, 32, 32, 3)
    assert np.allclose(ds.x[ds.y == 1][..., 2], 1.0)
    _png(tmp_path / "dog" / "big.png", size=(40, 40))
    with pytest.raises(DataError, match="big.png"):
        load_image_folder(tmp_path, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")


def test_unknown_sample_and_missing_dataset():
    with pytest.raises(DataError, match="embedded samples are: idc, mnist"):
        load_sample("imagenet")
    with pytest.raises(DataError, match="neither an embedded sample"):
        load_dataset("/no/such/folder")
