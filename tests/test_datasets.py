import dataclasses
import os

import numpy as np
import pytest
from helpers import make_msmt17, png_claiming, touch_image
from PIL import Image

from reid_tf import datasets
from reid_tf.datasets import DatasetError, Record


def test_parse_market_and_duke_names():
    assert datasets.market.parse_market_name("0002_c1s1_000451_03.jpg") == (2, 1)
    assert datasets.market.parse_market_name("-1_c3s2_012345_00.jpg") == (-1, 3)
    assert datasets.market.parse_market_name("0000_c6s4_002541_01.jpg") == (0, 6)
    assert datasets.market.parse_market_name("0005_c2_f0046985.jpg") == (5, 2)  # DukeMTMC-reID
    assert datasets.market.parse_market_name("Thumbs.db") is None
    assert datasets.market.parse_market_name("person5.jpg") is None


def test_market_layout(market_dir):
    splits = datasets.market.load_market1501(market_dir)
    train, query, gallery = splits["train"], splits["query"], splits["gallery"]
    assert train and query and gallery
    assert all(r.pid > 0 for r in train)  # junk and distractors never train
    assert {r.pid for r in gallery} >= {-1, 0}  # the gallery keeps junk and distractors
    assert not {r.pid for r in train} & {r.pid for r in query}  # disjoint identities
    for r in train + query + gallery:
        name = os.path.basename(r.path)
        assert datasets.market.parse_market_name(name) == (r.pid, r.camid)
        assert 1 <= r.camid <= 3


def test_duke_layout(tmp_path):
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(tmp_path / split)
    touch_image(tmp_path / "bounding_box_train" / "0005_c2_f0046985.jpg")
    touch_image(tmp_path / "query" / "0007_c1_f0001234.jpg")
    touch_image(tmp_path / "bounding_box_test" / "0007_c3_f0001299.jpg")
    splits = datasets.market.load_market1501(str(tmp_path))
    assert [(r.pid, r.camid) for r in splits["train"]] == [(5, 2)]
    assert [(r.pid, r.camid) for r in splits["gallery"]] == [(7, 3)]


def test_missing_folder_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"missing dataset folder .*nope.*bounding_box_train"):
        datasets.market.load_market1501(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "bounding_box_train")
    with pytest.raises(DatasetError, match=r"no query/ in .*--data_dir=.* to hold bounding_box_train/"):
        datasets.market.load_market1501(str(tmp_path))


def test_unmatched_names_are_reported_and_left_out(tmp_path, caplog):
    folder = tmp_path / "query"
    os.makedirs(folder)
    touch_image(folder / "0001_c1s1_000001_01.jpg")
    touch_image(folder / "badname.jpg")
    (folder / "Thumbs.db").write_bytes(b"x")
    records = datasets.market.read_market_folder(str(folder))
    assert [os.path.basename(r.path) for r in records] == ["0001_c1s1_000001_01.jpg"]
    assert "badname.jpg" in caplog.text and "left out 1" in caplog.text


def test_csv_list(tmp_path):
    (tmp_path / "list.csv").write_text("12,a/x.jpg,3\n12,a/y.jpg,1\n\n7,b/z.png,2\n")
    records = datasets.csv_list.load_csv(str(tmp_path / "list.csv"), str(tmp_path))
    assert records == [
        Record(str(tmp_path / "a/x.jpg"), 12, 3),
        Record(str(tmp_path / "a/y.jpg"), 12, 1),
        Record(str(tmp_path / "b/z.png"), 7, 2),
    ]
    (tmp_path / "names.csv").write_text("bob,x.jpg\nalice,y.jpg\n")
    records = datasets.csv_list.load_csv(str(tmp_path / "names.csv"), str(tmp_path))
    assert [(r.pid, r.camid) for r in records] == [(1, -1), (0, -1)]  # sorted names; camid unknown


def test_csv_bad_row_names_line(tmp_path):
    (tmp_path / "list.csv").write_text("1,a.jpg\n2\n")
    with pytest.raises(DatasetError, match=r"list.csv:2: expected 'pid,path\[,camid\]'"):
        datasets.csv_list.load_csv(str(tmp_path / "list.csv"), str(tmp_path))
    (tmp_path / "cam.csv").write_text("1,a.jpg,left\n")
    with pytest.raises(DatasetError, match=r"cam.csv:1: camid 'left'"):
        datasets.csv_list.load_csv(str(tmp_path / "cam.csv"), str(tmp_path))
    with pytest.raises(DatasetError, match="missing CSV list"):
        datasets.csv_list.load_csv(str(tmp_path / "none.csv"), str(tmp_path))


def test_relabel_is_dense_and_order_preserving():
    records = [Record("a", 40, 1), Record("b", 7, 1), Record("c", 40, 2), Record("d", 13, 1)]
    assert [r.pid for r in datasets.records.relabel(records)] == [2, 0, 2, 1]


def test_unreadable_images_are_reported_and_left_out(tmp_path, caplog):
    good = tmp_path / "0001_c1s1_000001_01.jpg"
    touch_image(good)
    gray = tmp_path / "0001_c2s1_000001_01.png"
    touch_image(gray, mode="L")
    truncated = tmp_path / "0002_c1s1_000001_01.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    text = tmp_path / "0003_c1s1_000001_01.jpg"
    text.write_text("not an image")
    bomb = tmp_path / "0004_c1s1_000001_01.png"  # a header that claims 25 megapixels
    bomb.write_bytes(png_claiming(5000, 5000))
    records = [Record(str(p), 1, 1) for p in (good, gray, truncated, text, bomb)]
    kept = datasets.records.drop_unreadable(records)
    assert [r.path for r in kept] == [str(good), str(gray)]
    assert str(truncated) in caplog.text and str(text) in caplog.text
    # Refused on its header: decoding would have failed on the missing pixel data instead.
    assert f"{bomb}: its header claims 5000x5000 pixels, over the limit of 16777216" in caplog.text
    assert "left out 3 unreadable or oversized image(s) of 5" in caplog.text


def test_validation_split_is_deterministic_and_disjoint(market_dir):
    train = datasets.market.load_market1501(market_dir)["train"]
    a = datasets.splits.split_validation(train, 3, seed=5)
    b = datasets.splits.split_validation(train, 3, seed=5)
    c = datasets.splits.split_validation(train, 3, seed=6)
    assert a == b and a != c
    rest, query, gallery = a
    held = {r.pid for r in query} | {r.pid for r in gallery}
    assert len(held) == 3 and not held & {r.pid for r in rest}
    assert sorted(rest + query + gallery) == sorted(train)  # nothing lost
    # One query per (identity, camera).
    keys = [(r.pid, r.camid) for r in query]
    assert len(keys) == len(set(keys)) == len({(r.pid, r.camid) for r in query + gallery})
    with pytest.raises(DatasetError, match="--valid_ids=8"):
        datasets.splits.split_validation(train, 8, seed=0)


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_layouts(tmp_path, version):
    root = make_msmt17(tmp_path, version)
    splits = datasets.msmt17.load_msmt17(root)
    # Labels move up by one (no identity 0, Market's distractor); cameras from the third field.
    expected = [(1, 1), (1, 3), (2, 2), (2, 15), (3, 4), (3, 5)]
    assert sorted({(r.pid, r.camid) for r in splits["train"]}) == expected
    assert [(r.pid, r.camid) for r in splits["query"]] == [(1, 1), (2, 3)]
    assert sorted((r.pid, r.camid) for r in splits["gallery"]) == [(1, 2), (1, 7), (2, 9)]
    assert all(os.path.exists(r.path) for rs in splits.values() for r in rs)
    assert len(datasets.msmt17.load_msmt17(root, merge_val=False)["train"]) == 4  # list_val.txt left out


def test_msmt17_refuses_a_wrong_folder_naming_the_layout_and_data_dir(tmp_path, market_dir):
    with pytest.raises(DatasetError) as e:
        datasets.msmt17.load_msmt17(market_dir)
    message = str(e.value)
    assert "\n" not in message and f"--data_dir={market_dir}" in message
    assert "list_train.txt" in message and "mask_train_v2/" in message
    root = make_msmt17(tmp_path)
    with open(os.path.join(root, "list_query.txt"), "a") as f:
        f.write("not a line\n")
    with pytest.raises(DatasetError, match=r"list_query.txt:3: expected 'DIR/FILE LABEL'"):
        datasets.msmt17.load_msmt17(root)


def _cuhk03_np(root):
    """CUHK03-NP as Zhong et al. ship it: detected/ and labeled/, each a Market-like layout."""
    for labels, offset in (("detected", 0), ("labeled", 100)):
        for split, pids in (("bounding_box_train", (1, 3)), ("query", (2,)), ("bounding_box_test", (2, 4))):
            os.makedirs(os.path.join(root, labels, split))
            for pid in pids:
                for cam in (1, 2):
                    touch_image(os.path.join(root, labels, split, f"{pid + offset:04d}_c{cam}_{cam}.png"))
    return str(root)


def test_cuhk03_np_layout(tmp_path, market_dir):
    from reid_tf.config import DataConfig

    root = _cuhk03_np(tmp_path)
    detected = datasets.load_dataset("cuhk03_np", root, DataConfig(dataset="cuhk03_np"))
    labeled_cfg = DataConfig(dataset="cuhk03_np", cuhk03_labels="labeled")
    labeled = datasets.load_dataset("cuhk03_np", root, labeled_cfg)
    assert sorted({r.pid for r in detected["train"]}) == [1, 3]
    assert sorted({r.pid for r in labeled["train"]}) == [101, 103]
    assert [(r.pid, r.camid) for r in detected["query"]] == [(2, 1), (2, 2)]
    assert all(r.path.endswith(".png") and "/detected/" in r.path for r in detected["gallery"])
    with pytest.raises(DatasetError) as e:
        datasets.load_dataset("cuhk03_np", market_dir, DataConfig(dataset="cuhk03_np"))
    assert f"--data_dir={market_dir}" in str(e.value) and "detected/ and labeled/" in str(e.value)


def test_several_datasets_train_as_one_with_identities_and_cameras_apart(tmp_path, market_dir):
    from reid_tf.config import DataConfig

    msmt = make_msmt17(tmp_path / "msmt")
    cfg = DataConfig(dataset="market1501,msmt17", data_dir=f"{market_dir},{msmt}", valid_ids=2,
                     train_eval_ids=0)
    market_train, msmt_train = datasets.load_training_sets(cfg)
    market_only = datasets.market.load_market1501(market_dir)["train"]
    assert market_train == market_only  # the first dataset keeps its pids and cameras
    assert min(r.pid for r in msmt_train) == max(r.pid for r in market_only) + 1 + 1  # MSMT17's 1, offset
    assert min(r.camid for r in msmt_train) > max(r.camid for r in market_only)
    splits = datasets.split_records([market_train, msmt_train], cfg, seed=0)
    held = {r.pid for r in splits["valid"][0] + splits["valid"][1]}
    assert held <= {r.pid for r in market_only} and len(held) == 2  # validation from the first
    assert len({r.pid for r in splits["train"]}) == 8 - 2 + 3
    cfg_msmt = dataclasses.replace(cfg, valid_dataset="msmt17")
    splits = datasets.split_records([market_train, msmt_train], cfg_msmt, seed=0)
    assert {r.pid for r in splits["valid"][0]} <= {r.pid for r in msmt_train}
    from reid_tf import config as C
    from reid_tf import report

    assert report.describe(C.RunConfig(data=cfg), "training")["dataset"] == "market1501 + msmt17"
    with pytest.raises(DatasetError, match=r"--dataset names 2 dataset\(s\) .* but --data_dir gives 1"):
        datasets.dataset_entries(dataclasses.replace(cfg, data_dir=market_dir))
    with pytest.raises(DatasetError, match="--valid_dataset=duke is not one of"):
        datasets.split_records([market_train, msmt_train], dataclasses.replace(cfg, valid_dataset="duke"), 0)


def test_test_split_of_any_dataset(tmp_path, market_dir):
    from reid_tf.config import DataConfig

    query, gallery = datasets.load_test_split(DataConfig(dataset="msmt17", data_dir=make_msmt17(tmp_path)))
    assert len(query) == 2 and len(gallery) == 3
    query, gallery = datasets.load_test_split(DataConfig(dataset="market1501", data_dir=market_dir))
    assert query == datasets.market.load_market1501(market_dir)["query"]
    with pytest.raises(DatasetError, match="--dataset=csv has no query/gallery split"):
        datasets.load_test_split(DataConfig(dataset="csv", data_dir=market_dir, train_csv="x.csv"))
