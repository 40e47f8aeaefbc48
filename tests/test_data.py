import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from reid_tf import augment, data, datasets
from reid_tf import images as image_io
from reid_tf.datasets import DatasetError, Record


def _batches(ds, n):
    return [tuple(t.numpy() for t in b) for b in ds.take(n)]


def test_pk_index_batches_invariants():
    # 10 identities with 1..10 images each; P=4, K=3.
    pids = np.repeat(np.arange(10) * 7, np.arange(1, 11))
    batches = [b.numpy() for b in data.pk_index_batches(pids, 4, 3, seed=0).take(200)]
    visits = np.zeros(10)
    for b in batches:
        assert b.shape == (12,)
        batch_pids = pids[b].reshape(4, 3)
        assert (batch_pids == batch_pids[:, :1]).all()  # K images of one identity, in a row
        assert len(set(batch_pids[:, 0])) == 4  # P distinct identities
        for row, idx in zip(batch_pids[:, 0], b.reshape(4, 3)):
            count = (pids == row).sum()
            # Padding repeats its own images evenly: each image at least floor(K/count) times.
            used = np.bincount(idx - np.flatnonzero(pids == row)[0], minlength=count)
            assert used.min() >= 3 // count and used.max() <= -(-3 // count)
        visits[np.unique(pids[b]) // 7] += 1
    # 200 batches x 4 = 800 visits over 10 ids: each ~80 (epochs of 8, remainder 2 dropped).
    assert visits.min() >= 70 and visits.max() <= 90


def test_pk_index_batches_deterministic_by_seed():
    pids = np.repeat(np.arange(12), 5)
    a = [b.numpy() for b in data.pk_index_batches(pids, 4, 2, seed=1).take(10)]
    b = [b.numpy() for b in data.pk_index_batches(pids, 4, 2, seed=1).take(10)]
    c = [b.numpy() for b in data.pk_index_batches(pids, 4, 2, seed=2).take(10)]
    assert all((x == y).all() for x, y in zip(a, b))
    assert any((x != y).any() for x, y in zip(a, c))


def test_too_few_identities_names_p():
    with pytest.raises(DatasetError, match=r"P=5 .*--return_id_num.* only 3 identities"):
        data.pk_index_batches([0, 0, 1, 2], 5, 2, seed=0)


@pytest.mark.parametrize("augment", data.AUGMENTATIONS.names())
def test_train_dataset_batches(market_dir, augment):
    train = datasets.records.relabel(datasets.market.load_market1501(market_dir)["train"])
    ds = data.train_dataset(train, 4, 2, 64, 32, augment=augment, seed=0)
    for images, pids in _batches(ds, 3):
        assert images.shape == (8, 64, 32, 3) and images.dtype == np.float32
        assert pids.dtype == np.int32
        if not augment.startswith("original"):  # the original's brightness is unclipped
            assert 0.0 <= images.min() and images.max() <= 255.0
        assert images.std() > 5
        assert len(set(pids)) == 4 and (np.bincount(pids)[np.unique(pids)] == 2).all()
    first = _batches(data.train_dataset(train, 4, 2, 64, 32, augment=augment, seed=0), 3)
    again = _batches(data.train_dataset(train, 4, 2, 64, 32, augment=augment, seed=0), 3)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, again))


def test_augmentation_levels_differ_as_specified(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "0001_c1s1_000001_01.png"
    Image.fromarray(rng.integers(0, 255, (64, 32, 3), np.uint8)).save(path)
    image = image_io.decode_image(tf.io.read_file(str(path)))
    seed = tf.constant([1, 2], tf.int64)
    none = augment.augment_image(image, 64, 32, "none", seed).numpy()
    np.testing.assert_array_equal(none, image.numpy())  # same size: resize is the identity
    basic = [augment.augment_image(image, 64, 32, "basic", tf.constant([1, s], tf.int64)).numpy()
             for s in range(20)]
    # Basic = flip + crop of a 12.5% larger resize: values stay within the image's range.
    assert all(b.shape == (64, 32, 3) for b in basic)
    assert len({b.tobytes() for b in basic}) > 10
    enhanced = augment.augment_image(image, 64, 32, "enhanced", seed).numpy()
    assert enhanced.shape == (64, 32, 3) and 0 <= enhanced.min() and enhanced.max() <= 255


def test_random_erasing_erases_a_rectangle():
    image = tf.zeros([64, 32, 3])
    erased = [augment.random_erasing(image, tf.constant([0, s], tf.int64), probability=1.0).numpy()
              for s in range(10)]
    for e in erased:
        rows, cols = np.nonzero(e.any(axis=2))
        area = len(rows)
        assert area > 0
        # The nonzero pixels fill their bounding box (up to noise exactly 0).
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert area >= 0.99 * box and box <= 0.45 * 64 * 32
    never = augment.random_erasing(image, tf.constant([0, 1], tf.int64), probability=0.0).numpy()
    assert not never.any()


def test_eval_dataset_every_image_once_in_order(market_dir):
    gallery = datasets.market.load_market1501(market_dir)["gallery"]
    batches = _batches(data.eval_dataset(gallery, 64, 32, batch_size=5), 100)
    assert [len(b[1]) for b in batches][:-1] == [5] * (len(batches) - 1)  # last partial kept
    pids = np.concatenate([b[1] for b in batches])
    camids = np.concatenate([b[2] for b in batches])
    assert pids.tolist() == [r.pid for r in gallery]
    assert camids.tolist() == [r.camid for r in gallery]
    for i in (0, len(gallery) - 1):  # no augmentation: each image as load_eval_image gives it
        expected = image_io.load_eval_image(tf.io.read_file(gallery[i].path), 64, 32).numpy()
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches])[i], expected)


def test_decode_grayscale_png_and_jpeg_to_rgb(tmp_path):
    Image.new("L", (8, 16), 77).save(tmp_path / "g.png")
    Image.new("RGB", (8, 16), (10, 200, 30)).save(tmp_path / "c.jpg", quality=100)
    gray = image_io.decode_image(tf.io.read_file(str(tmp_path / "g.png"))).numpy()
    color = image_io.decode_image(tf.io.read_file(str(tmp_path / "c.jpg"))).numpy()
    assert gray.shape == (16, 8, 3) and (gray == 77).all()
    assert color.shape == (16, 8, 3) and np.abs(color - [10, 200, 30]).max() <= 3


def test_small_identities_are_reported(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="absl"):
        data.pk_index_batches([0, 1, 1, 2, 2, 2], 2, 3, seed=0)
    assert "2 of 3 identities have fewer than K=3 images" in caplog.text


def test_small_identity_padded_only_with_its_own_images(tmp_path):
    records = []
    for pid, n in ((0, 1), (1, 3), (2, 4)):
        for i in range(n):
            path = tmp_path / f"{pid}_{i}.png"
            Image.new("RGB", (32, 64), (pid * 100, i * 60, 0)).save(path)
            records.append(Record(str(path), pid, 1))
    ds = data.train_dataset(records, 3, 4, 64, 32, augment="none", seed=0)
    for images, pids in _batches(ds, 5):
        for pid in range(3):
            red = images[pids == pid][:, 0, 0, 0]
            assert (red == pid * 100).all()  # never another identity's image
        only = images[pids == 0][:, 0, 0, 1]
        assert (only == 0).all()  # the single image, 4 times


def test_color_jitter_is_one_affine_map_with_the_stated_effects():
    image = tf.random.stateless_uniform([16, 8, 3], [5, 6], minval=60.0, maxval=190.0)  # no clipping
    seed = tf.constant([0, 9], tf.int64)
    np.testing.assert_allclose(augment._color_jitter(image, seed, 0, 0, 0, 0), image, atol=1e-3)
    luma = np.asarray(image) @ augment._LUMA
    changes = []
    for s in range(5):  # a hue rotation alone keeps each pixel's luma and its distance from gray
        seed = tf.constant([1, s], tf.int64)
        rotated = augment._color_jitter(image, seed, 0, 0, 0, 0.05).numpy()
        np.testing.assert_allclose(rotated @ augment._LUMA, luma, atol=1e-3)
        changes.append(np.abs(rotated - image).max())
        bright = augment._color_jitter(image, seed, 0.2, 0, 0, 0).numpy() - np.asarray(image)
        assert np.ptp(bright) < 1e-3 and abs(bright.mean()) <= 0.2 * 255  # one shift for all pixels
        gray = augment._color_jitter(image, seed, 0, 0, 0.2, 0).numpy()
        np.testing.assert_allclose(gray @ augment._LUMA, luma, atol=1e-3)  # saturation keeps luma too
    assert max(changes) > 5  # the hue does turn
