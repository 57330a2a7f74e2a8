"""Dataset layouts as they ship: UCF101 split files, Kinetics CSVs, BDD100K split folders.

What must hold: the right files with the right labels for each split (UCF101 labels in
classInd's order, Kinetics labels shared by every CSV), listed-but-absent files counted
and never fatal, split folders never read as classes, and the generic layouts unchanged.
"""

import os
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from cvg_fast.cli import main as cvg_main
from cvg_fast.data import VideoFolder, scan_video_folder, write_video
from cvg_fast.data.folder_index import index_folder
from cvg_fast.data.layouts import detect_layout
from cvg_fast.errors import CvgError

UCF_CLASSES = ["YoYo", "ApplyEyeMakeup", "HandstandPushups"]  # classInd order, not sorted


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One tiny real video per suffix (4 frames, 16x16): copied wherever a test needs one."""
    folder = tmp_path_factory.mktemp("clips")
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    return {ext: write_video(folder / f"clip{ext}", frames, fps=8, codec=codec)
            for ext, codec in ((".avi", "mpeg4"), (".mp4", "libx264"), (".mov", "libx264"))}


def _put(clips, path, ext=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clips[ext or path.suffix], path)


def _one_line(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


# --------------------------------------------------------------------------- UCF101


def _ucf(clips, tmp_path, lists_at="inside"):
    """UCF-101 with 2 videos per class (g01 test, g08 train); trainlist01 lists one absent
    video and spells HandstandPushups as HandStandPushups (the known quirk)."""
    root = tmp_path / "UCF-101"
    for c in UCF_CLASSES:
        for g in ("g01", "g08"):
            _put(clips, root / c / f"v_{c}_{g}_c01.avi")
    lists = {"inside": root / "ucfTrainTestlist", "beside": tmp_path / "ucfTrainTestlist",
             "root": root}[lists_at]
    lists.mkdir(parents=True, exist_ok=True)
    crlf = "\r\n"
    (lists / "classInd.txt").write_bytes(
        crlf.join(f"{k} {c}  " for k, c in enumerate(UCF_CLASSES, 1)).encode() + b"\r\n\r\n")
    train = ["YoYo/v_YoYo_g08_c01.avi 1", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2",
             "HandStandPushups/v_HandStandPushups_g08_c01.avi 3", "YoYo/v_YoYo_g09_c01.avi 1"]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "HandstandPushups/"
            "v_HandstandPushups_g01_c01.avi ", "YoYo/v_YoYo_g01_c01.avi"]
    (lists / "trainlist01.txt").write_bytes((crlf.join(train) + crlf).encode())
    (lists / "testlist01.txt").write_bytes((crlf.join(test) + crlf).encode())
    return root


@pytest.mark.parametrize("lists_at", ["inside", "beside", "root"])
def test_ucf101_splits_use_class_ind_order(clips, tmp_path, lists_at):
    root = _ucf(clips, tmp_path, lists_at)
    test = detect_layout(root, split="test1")
    assert (test.layout, test.split, test.classes) == ("ucf101", "test1", UCF_CLASSES)
    assert test.items == [("YoYo/v_YoYo_g01_c01.avi", 0),
                          ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 1),
                          ("HandstandPushups/v_HandstandPushups_g01_c01.avi", 2)]
    assert test.missing == [] and test.case_matched == 0
    assert test.describe() == "UCF101 layout, split test1: 3 videos, 3 classes"
    with pytest.warns(UserWarning, match=r"1 of 4 videos listed in .*trainlist01.txt are not "
                                         r"on disk \(e.g. YoYo/v_YoYo_g09_c01.avi\)"):
        train = detect_layout(root, split="train")
    assert train.split == "train1"
    assert train.items == [("YoYo/v_YoYo_g08_c01.avi", 0),
                           ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 1),
                           ("HandstandPushups/v_HandstandPushups_g08_c01.avi", 2)]
    assert train.missing == ["YoYo/v_YoYo_g09_c01.avi"] and train.case_matched == 1
    assert train.describe().endswith("3 videos, 3 classes (1 matched by a case-insensitive "
                                     "name)")
    assert not {p for p, _ in train.items} & {p for p, _ in test.items}
    every = detect_layout(root)  # no split: every video, labels from classInd
    assert every.split is None and len(every.items) == 6
    assert {(p.split("/")[0], label) for p, label in every.items} == {
        (c, k) for k, c in enumerate(UCF_CLASSES)}
    assert scan_video_folder(root) == (UCF_CLASSES, every.items)


def test_ucf101_split_errors(clips, tmp_path):
    root = _ucf(clips, tmp_path)
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="validate")
    _one_line(e, "'validate'", "train1, train2, train3, test1, test2, test3")
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="test2")
    _one_line(e, "testlist02.txt not found", "train1, test1")


def test_ucf101_lists_beside_another_dataset_do_not_claim_it(clips, tmp_path):
    _ucf(clips, tmp_path, "beside")
    other = tmp_path / "other"
    for c in ("cats", "dogs"):
        _put(clips, other / c / "a.mp4")
    listing = detect_layout(other)
    assert (listing.layout, listing.classes) == ("folders", ["cats", "dogs"])


# --------------------------------------------------------------------------- Kinetics

_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"
_TRAIN = [("abseiling", "aaa", 10, 20), ("arranging flowers, bouquets", "bbb", 0, 10),
          ("air drumming", "ccc", 5, 15), ("abseiling", "gone", 30, 40)]  # "gone": deleted
_VAL = [("zumba", "ddd", 1, 11), ("abseiling", "eee", 100, 110)]
_K_CLASSES = ["abseiling", "air drumming", "arranging flowers, bouquets", "zumba"]


def _quote(label):
    return f'"{label}"' if "," in label else label


def _csv(rows, split):
    return _HEADER + "".join(f"{_quote(label)},{y},{a},{b},{split},0\n"
                             for label, y, a, b in rows)


def _kinetics(clips, root, clips_at, csv_at):
    csv_dir = root if csv_at == "root" else root / "annotations"
    csv_dir.mkdir(parents=True)
    prefix = "" if csv_at == "root" else "kinetics600_"
    (csv_dir / f"{prefix}train.csv").write_text(_csv(_TRAIN, "train"))
    (csv_dir / f"{prefix}validate.csv").write_text(_csv(_VAL, "val"))
    for rows, split in ((_TRAIN, "train"), (_VAL, "val")):
        for label, y, a, b in rows:
            if y == "gone":
                continue
            folder = {"flat": root, "split": root / split, "class": root / label,
                      "split_class": root / split / label}[clips_at]
            _put(clips, folder / f"{y}_{a:06d}_{b:06d}.mp4")
    return root


@pytest.mark.parametrize("clips_at,csv_at", [("flat", "root"), ("split", "annotations"),
                                             ("class", "root"), ("split_class", "annotations")])
def test_kinetics_labels_from_every_csv_missing_clips_counted(clips, tmp_path, clips_at, csv_at):
    root = _kinetics(clips, tmp_path / "k600", clips_at, csv_at)
    with pytest.warns(UserWarning, match=r"1 of 4 videos listed in (kinetics600_)?train.csv "
                                         r"are not on disk \(e.g. gone_000030_000040.mp4\)"):
        train = detect_layout(root, split="train")
    assert (train.layout, train.split, train.classes) == ("kinetics", "train", _K_CLASSES)
    assert [(os.path.basename(p), label) for p, label in train.items] == [
        ("aaa_000010_000020.mp4", 0), ("ccc_000005_000015.mp4", 1), ("bbb_000000_000010.mp4", 2)]
    assert train.missing == ["gone_000030_000040.mp4"]
    assert train.describe() == "Kinetics layout, split train: 3 videos, 4 classes"
    assert all(os.path.isfile(root / p) for p, _ in train.items)
    for name in ("val", "validate"):
        val = detect_layout(root, split=name)
        assert val.split == "validate" and val.classes == _K_CLASSES and val.missing == []
        assert [(os.path.basename(p), label) for p, label in val.items] == [
            ("eee_000100_000110.mp4", 0), ("ddd_000001_000011.mp4", 3)]
    with pytest.warns(UserWarning, match="1 of 6 videos"):
        every = detect_layout(root)
    assert every.split is None and len(every.items) == 5


def test_kinetics_split_errors_and_nothing_found(clips, tmp_path):
    root = _kinetics(clips, tmp_path / "k600", "flat", "root")
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="train1")
    _one_line(e, "'train1'", "train, validate, val, test")
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="test")
    _one_line(e, "no CSV rows of split test", "train, validate")
    for p in root.glob("*.mp4"):
        p.unlink()
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="validate")
    _one_line(e, "none of the 2 clips", "{youtube_id}_{start:06d}_{end:06d}.mp4")


# --------------------------------------------------------------------------- split folders


@pytest.mark.parametrize("base", ["videos", "."])
def test_bdd100k_split_folders_are_not_classes(clips, tmp_path, base):
    root = tmp_path / "bdd100k"
    for split, names in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d"])):
        for n in names:
            _put(clips, root / base / split / f"{n}.mov")
    if base == "videos":
        (root / "labels").mkdir()  # BDD100K ships labels/ and info/ beside videos/
    prefix = "" if base == "." else "videos/"
    val = detect_layout(root, split="val")
    assert (val.layout, val.classes, val.split) == ("bdd100k", None, "val")
    assert val.items == [(f"{prefix}val/c.mov", 0)]
    assert val.describe() == "BDD100K layout, split val: 1 videos, unconditional"
    assert detect_layout(root, split="train").items == [(f"{prefix}train/a.mov", 0),
                                                        (f"{prefix}train/b.mov", 0)]
    for call in (lambda: detect_layout(root), lambda: scan_video_folder(root)):
        with pytest.raises(CvgError) as e:
            call()
        _one_line(e, "split into folders test, train, val, not classes", "--split")
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="train1")
    _one_line(e, "unknown split 'train1'", "test, train, val")


def test_split_folders_of_class_folders_share_labels(clips, tmp_path):
    root = tmp_path / "data"
    for split, classes in (("train", ["a", "b"]), ("val", ["b", "c"])):
        for c in classes:
            _put(clips, root / split / c / "x.mp4")
    val = detect_layout(root, split="validate")  # val/validate/validation name one folder
    assert (val.layout, val.classes, val.split) == ("folders", ["a", "b", "c"], "val")
    assert val.items == [("val/b/x.mp4", 1), ("val/c/x.mp4", 2)]


# --------------------------------------------------------------------------- generic


def test_generic_layouts_unchanged_and_split_refused(clips, tmp_path):
    root = tmp_path / "classes"
    for c, n in (("b", 2), ("a", 1)):
        for k in range(n):
            _put(clips, root / c / f"{k}.mp4")
    listing = detect_layout(root)
    assert (listing.layout, listing.classes, listing.split, listing.missing) == (
        "folders", ["a", "b"], None, [])
    assert listing.items == [("a/0.mp4", 0), ("b/0.mp4", 1), ("b/1.mp4", 1)]
    assert scan_video_folder(root) == (["a", "b"], listing.items)
    assert listing.describe() == "class-folder layout: 3 videos, 2 classes"
    flat = detect_layout(root / "b")
    assert (flat.layout, flat.classes, flat.items) == ("flat", None, [("0.mp4", 0), ("1.mp4", 0)])
    with pytest.raises(CvgError) as e:
        detect_layout(root, split="train")
    _one_line(e, "--split train does not apply", "leave --split out")
    with pytest.raises(CvgError) as e:
        detect_layout(root, layout="bdd100k")
    _one_line(e, "no split folders")
    with pytest.raises(CvgError) as e:
        detect_layout(root, layout="flat")
    _one_line(e, "holds class folders", "--layout folders")
    with pytest.raises(CvgError) as e:
        detect_layout(root, layout="ucf")
    _one_line(e, "auto, ucf101, kinetics, bdd100k, folders, flat")


# --------------------------------------------------------------------------- consumers


def test_video_folder_and_index_take_the_split(clips, tmp_path, capsys):
    root = _ucf(clips, tmp_path)
    ds = VideoFolder(root, clip_frames=4, size=16, split="test1", progress=False)
    assert len(ds) == 3 and ds.num_classes == 3 and ds.classes == UCF_CLASSES
    assert ds.labels == [0, 1, 2] and ds[1]["label"].item() == 1
    assert ds.listing.split == "test1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = index_folder(root, split="train1", progress=False, use_cache=False).report()
    assert "layout: UCF101 layout, split train1: 3 videos, 3 classes" in report
    assert "missing: 1 listed videos not on disk (e.g. YoYo/v_YoYo_g09_c01.avi)" in report
    assert cvg_main(["data", "index", str(root), "--split", "test1", "--no-progress",
                     "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(": 3 videos, 3 classes")
    assert "layout: UCF101 layout, split test1: 3 videos, 3 classes\n" in out
    assert "missing: 0 listed videos not on disk" in out and "unreadable: 0" in out
    assert cvg_main(["data", "index", str(root), "--split", "val", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown split 'val'") and "\n" not in err


def test_train_level_passes_split_and_layout(clips, tmp_path, monkeypatch):
    from cvg_fast.training import launch, trainer
    from conftest import narrow_tiny

    root = tmp_path / "bdd"
    _put(clips, root / "train" / "a.mov")
    _put(clips, root / "val" / "b.mov")
    with pytest.raises(CvgError) as e:  # the real trainer reaches VideoFolder with them
        trainer.train_level(narrow_tiny(), 1, root, tmp_path / "run", device="cpu",
                            progress=False, split="nope")
    _one_line(e, "unknown split 'nope'", "train, val")
    seen = {}
    done = SimpleNamespace(level=1, steps=0, seconds=0.0, run_dir=str(tmp_path / "run"))
    monkeypatch.setattr(trainer, "train_level", lambda *a, **kw: seen.update(kw) or done)
    assert launch.main(["--level", "1", "--data", str(root), "--out", str(tmp_path / "run"),
                        "--split", "val", "--layout", "bdd100k"]) == 0
    assert (seen["split"], seen["layout"]) == ("val", "bdd100k")
