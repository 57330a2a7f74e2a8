"""Which files, which labels: a dataset folder read the way the dataset ships.

    listing = detect_layout("/data/UCF-101", split="test1")
    listing.describe()  # 'UCF101 layout, split test1: 3,783 videos, 101 classes'
    listing.items       # [(path relative to root, label)], sorted by label then path

Layouts, detected in this order (`layout=` forces one):
  ucf101    ROOT/<Class>/v_<Class>_gXX_cYY.avi with classInd.txt, trainlist0N.txt and
            testlist0N.txt in ROOT/ucfTrainTestlist, ROOT/../ucfTrainTestlist or ROOT.
            Label = classInd number - 1 (classInd's order, not sorted folder names).
  kinetics  CSVs `label,youtube_id,time_start,time_end,split[,...]` in ROOT or
            ROOT/annotations; clips `{youtube_id}_{start:06d}_{end:06d}.mp4` anywhere
            under ROOT (class folders or flat, split folders or not). Label = index in
            the sorted labels of every CSV found, so train and validate agree.
  bdd100k   ROOT/videos/<split>/*.mov or ROOT/<split>/*.mov: flat, unconditional.
  folders   ROOT/<class>/**/<video>: label = index of the sorted folder names; with
            split folders, ROOT/<split>/<class>/... and the classes of all splits.
  flat      ROOT/<video>: unconditional.
Why: a folder of train/val/test subfolders must never read as a 3-class dataset, and a
label must mean the same class in every split and in every paper's table.

Files listed by split files or CSVs but absent on disk (deleted YouTube videos) are
normal: `missing` holds them and one warning counts them; only an empty result fails.
Hidden files and folders (name starts with '.') are ignored, and so are files whose
suffix is not a video suffix (`VIDEO_EXTENSIONS`).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass, field

from cvg_fast.data.video_io import VIDEO_EXTENSIONS
from cvg_fast.errors import CvgError

__all__ = ["LAYOUTS", "DatasetListing", "detect_layout", "scan_generic"]

LAYOUTS = ("auto", "ucf101", "kinetics", "bdd100k", "folders", "flat")
SPLIT_FOLDER_NAMES = ("train", "val", "test", "validate", "validation")
UCF_SPLITS = ("train", "test", "train1", "train2", "train3", "test1", "test2", "test3")
KINETICS_SPLITS = ("train", "validate", "val", "test")

# --split / --layout help of `cvg data index` and train/level.py; detect_layout checks values
SPLIT_HELP = ("which split: UCF101 train/test (fold 1) or train1..3/test1..3, Kinetics "
              "train/validate/test, split folders (BDD100K): the folder name (default: every "
              "video; required with split folders)")
LAYOUT_HELP = (f"{', '.join(LAYOUTS)} (default: auto, detected); folders: one subfolder per "
               f"class, flat: unconditional")

_NAMES = {"ucf101": "UCF101", "kinetics": "Kinetics", "bdd100k": "BDD100K",
          "folders": "class-folder", "flat": "flat-folder"}
_UCF_LIST_DIR = "ucfTrainTestlist"
_KINETICS_COLUMNS = {"youtube_id", "time_start", "time_end"}
_KINETICS_SPLIT = {"train": "train", "val": "validate", "validate": "validate",
                   "validation": "validate", "test": "test"}
_EXAMPLES = 3


@dataclass
class DatasetListing:
    """The videos of a dataset folder and their labels, before any file is opened.

    items: [(path relative to root, label)]; classes: label -> name, or None when
    unconditional; missing: paths/clip names listed by split files or CSVs but absent;
    case_matched: listed entries found on disk only by a case-insensitive match.
    """

    root: str
    layout: str  # "ucf101" | "kinetics" | "bdd100k" | "folders" | "flat"
    classes: list[str] | None
    items: list[tuple[str, int]]
    split: str | None = None
    missing: list[str] = field(default_factory=list)
    case_matched: int = 0

    def describe(self) -> str:
        """One line, e.g. 'UCF101 layout, split test1: 3,783 videos, 101 classes'."""
        if self.split is not None:
            where = f", split {self.split}"
        else:
            where = ", all splits" if self.layout in ("ucf101", "kinetics") else ""
        kind = f"{len(self.classes):,} classes" if self.classes is not None else "unconditional"
        line = f"{_NAMES[self.layout]} layout{where}: {len(self.items):,} videos, {kind}"
        if self.case_matched:
            line += f" ({self.case_matched:,} matched by a case-insensitive name)"
        return line


def detect_layout(root: str | os.PathLike, split: str | None = None,
                  layout: str = "auto") -> DatasetListing:
    """The listing of `root` in its detected (or forced) layout, restricted to `split`.

    split: UCF101 train/test (fold 1) or train1..train3/test1..test3; Kinetics
    train/validate/val/test; split folders (BDD100K): the folder name; None: every
    video (UCF101, Kinetics), a one-line CvgError for split folders, the folder
    otherwise. Raises CvgError for a bad root, layout or split, or no videos.
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if layout not in LAYOUTS:
        raise CvgError(f"unknown layout {layout!r} (--layout); use one of {', '.join(LAYOUTS)}")
    _check_root(root)
    if layout in ("auto", "ucf101"):
        lists = _find_ucf_lists(root)
        if lists is not None and (layout == "ucf101" or _ucf_folders_match(root, lists)):
            return _ucf101(root, lists, split)
        if layout == "ucf101":
            raise CvgError(
                f"no UCF101 classInd.txt in {root}/{_UCF_LIST_DIR}, "
                f"{os.path.dirname(root)}/{_UCF_LIST_DIR} or {root}; unpack "
                f"UCF101TrainTestSplits-RecognitionTask.zip there, or use --layout folders")
    if layout in ("auto", "kinetics"):
        csvs = _find_kinetics_csvs(root)
        if csvs:
            return _kinetics(root, csvs, split)
        if layout == "kinetics":
            raise CvgError(
                f"no Kinetics CSV (columns label,youtube_id,time_start,time_end) in {root} or "
                f"{root}/annotations; put train.csv/validate.csv there, or use --layout folders")
    return _folders(root, split, layout)


# --------------------------------------------------------------------------- generic


def _check_root(root: str) -> None:
    if not os.path.exists(root):
        raise CvgError(
            f"dataset folder {root} does not exist; check the path "
            f"(or make a synthetic dataset with `cvg data synth {root}`)"
        )
    if not os.path.isdir(root):
        raise CvgError(
            f"{root} is a file, not a folder; pass the folder that holds the videos "
            "or the class folders"
        )


def _is_video(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _holds_videos(folder: str) -> bool:
    """Whether any video file lies under `folder` (hidden ones aside; links followed once)."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        dirnames[:] = [] if real in seen else [d for d in dirnames if not d.startswith(".")]
        seen.add(real)
        if any(_is_video(name) for name in filenames):
            return True
    return False


def _is_fake_video(folder: str, name: str) -> bool:
    """A folder named like a video that holds none (`x.mp4/`): listed as a bad video, so
    a dataset never loses a file without saying so."""
    return _is_video(name) and not _holds_videos(os.path.join(folder, name))


def _walk_videos(folder: str, root: str) -> tuple[list[str], int, list[str]]:
    """Video paths under `folder` (relative to `root`, sorted; a folder named like a video
    that holds none counts as one, a bad one), the number of other files seen, and a few
    of their names. Follows symlinks, never a loop twice."""
    videos, others, other_names = [], 0, []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        fake = [d for d in dirnames if _is_fake_video(dirpath, d)]
        videos.extend(os.path.relpath(os.path.join(dirpath, name), root) for name in fake)
        dirnames[:] = [d for d in dirnames if d not in fake]
        for name in filenames:
            if name.startswith("."):
                continue
            if _is_video(name):
                videos.append(os.path.relpath(os.path.join(dirpath, name), root))
            else:
                others += 1
                if len(other_names) < 3:
                    other_names.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(videos), others, other_names


def scan_generic(root: str) -> tuple[list[str] | None, list[tuple[str, int]]]:
    """(classes, items) of a class-folder or flat folder: classes is the sorted
    class-folder names, or None for a flat folder; items is [(path relative to root,
    label)], sorted by class then path. Raises CvgError for a missing root, a file
    instead of a folder, no videos, or a mix of loose videos and class folders."""
    _check_root(root)
    entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
    loose, subdirs, fake, others, other_names = [], [], [], 0, []
    for name in entries:
        full = os.path.join(root, name)
        if os.path.isdir(full):
            (fake if _is_fake_video(root, name) else subdirs).append(name)
        elif _is_video(name):
            loose.append(name)
        else:
            others += 1
            if len(other_names) < 3:
                other_names.append(name)
    per_class = {}
    for name in subdirs:
        vids, n_other, names = _walk_videos(os.path.join(root, name), root)
        per_class[name] = vids
        others += n_other
        other_names.extend(names[: max(0, 3 - len(other_names))])
    with_videos = [c for c in subdirs if per_class[c]]
    if loose or not with_videos:  # flat layout: `x.mp4/` is a bad video, reported as one
        loose = sorted(loose + fake)
    else:  # class layout: an empty class folder, whatever its name (warned below)
        subdirs = sorted(subdirs + fake)
        per_class.update((name, []) for name in fake)
    if loose and with_videos:
        raise CvgError(
            f"{root} holds both loose videos (e.g. {loose[0]}) and class folders with videos "
            f"(e.g. {with_videos[0]}/); move every video into a class folder, "
            "or point at a folder of videos only"
        )
    if loose:
        return None, [(name, 0) for name in loose]
    if not with_videos:
        seen = f"; found {others} other files (e.g. {', '.join(other_names)})" if others else ""
        raise CvgError(
            f"no video files found in {root}{seen}; expected {root}/<class>/<video> or "
            f"{root}/<video> with a video suffix such as .mp4 .avi .mkv .webm .mov"
        )
    if others:  # say so: a video with an unexpected suffix must not vanish silently
        warnings.warn(
            f"{root}: ignored {others} file(s) without a video suffix "
            f"(e.g. {', '.join(other_names)}); rename real videos to .mp4/.avi/... to use them",
            stacklevel=4,
        )
    empty = [c for c in subdirs if not per_class[c]]
    if empty:
        warnings.warn(
            f"{root}: {len(empty)} class folder(s) hold no videos and get no samples: "
            f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}",
            stacklevel=4,
        )
    items = [(rel, label) for label, c in enumerate(subdirs) for rel in per_class[c]]
    return subdirs, items


def _subfolders(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder)
                  if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))


def _split_folders(root: str) -> tuple[str, list[str]] | None:
    """(base, split folder names) when root or root/videos holds only split folders."""
    for base in (root, os.path.join(root, "videos")):
        if os.path.isdir(base):
            subs = _subfolders(base)
            if subs and all(d.lower() in SPLIT_FOLDER_NAMES for d in subs):
                return base, subs
    return None


def _folders(root: str, split: str | None, layout: str) -> DatasetListing:
    """Generic class folders or flat folder, under split folders (BDD100K) or not."""
    found = _split_folders(root)
    if found is not None and (split is not None or layout in ("auto", "bdd100k")):
        return _split_folder(root, found, split, layout)
    if layout == "bdd100k":
        raise CvgError(
            f"no split folders (train, val, test) in {root} or {root}/videos; point at the "
            f"BDD100K folder that holds videos/train, or use --layout flat")
    if split is not None:
        raise CvgError(
            f"--split {split} does not apply to {root}: it has no split folders (train/val/"
            f"test), no UCF101 split files and no Kinetics CSV; leave --split out")
    classes, items = scan_generic(root)
    _check_forced(root, layout, classes)
    return DatasetListing(root, "folders" if classes is not None else "flat", classes, items)


def _split_folder(root: str, found: tuple[str, list[str]], split: str | None,
                  layout: str) -> DatasetListing:
    base, names = found
    avail = ", ".join(names)
    if split is None:
        raise CvgError(
            f"{base} is split into folders {avail}, not classes; pick one with --split "
            f"(e.g. --split {names[0]}) so a run never trains on a held-out split by accident")
    chosen = [d for d in names if d.lower() == split.lower()]
    if not chosen:
        alias = _KINETICS_SPLIT.get(split.lower())
        chosen = [d for d in names if alias and _KINETICS_SPLIT.get(d.lower()) == alias]
    if len(chosen) != 1:
        raise CvgError(f"unknown split {split!r} for {base}; use --split with one of {avail}")
    folder = os.path.join(base, chosen[0])
    classes, items = scan_generic(folder)
    _check_forced(folder, layout, classes)
    prefix = os.path.relpath(folder, root)
    items = [(os.path.join(prefix, rel), label) for rel, label in items]
    if classes is None:
        return DatasetListing(root, "bdd100k", None, items, split=chosen[0])
    # every split's class folders, so a label means the same class in train and val
    union = sorted({c for d in names for c in _subfolders(os.path.join(base, d))})
    remap = [union.index(c) for c in classes]
    items = [(rel, remap[label]) for rel, label in items]
    return DatasetListing(root, "folders", union, items, split=chosen[0])


def _check_forced(folder: str, layout: str, classes: list[str] | None) -> None:
    if layout in ("flat", "bdd100k") and classes is not None:
        raise CvgError(f"--layout {layout}: {folder} holds class folders ({classes[0]}, ...), "
                       f"not loose videos; use --layout folders")
    if layout == "folders" and classes is None:
        raise CvgError(f"--layout folders: {folder} holds loose videos, not class folders; "
                       f"use --layout flat")


def _warn_missing(root: str, missing: list[str], total: int, source: str) -> None:
    if missing:
        warnings.warn(
            f"{root}: {len(missing):,} of {total:,} videos listed in {source} are not on disk "
            f"(e.g. {', '.join(missing[:_EXAMPLES])}); they are left out",
            stacklevel=4,
        )


# --------------------------------------------------------------------------- UCF101


def _find_ucf_lists(root: str) -> str | None:
    """The folder holding classInd.txt: ROOT/ucfTrainTestlist, ROOT/../ucfTrainTestlist, ROOT."""
    for folder in (os.path.join(root, _UCF_LIST_DIR),
                   os.path.join(os.path.dirname(root), _UCF_LIST_DIR), root):
        if os.path.isfile(os.path.join(folder, "classInd.txt")):
            return folder
    return None


def _read_lines(path: str) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of every non-blank line; CRLF-safe."""
    with open(path, encoding="utf-8-sig") as f:
        return [(k, line.split()) for k, line in enumerate(f, 1) if line.strip()]


def _read_class_ind(folder: str) -> list[str]:
    path = os.path.join(folder, "classInd.txt")
    numbered = {}
    for lineno, parts in _read_lines(path):
        if len(parts) != 2 or not parts[0].isdigit():
            raise CvgError(f"{path}:{lineno}: expected '<number> <ClassName>', got "
                           f"{' '.join(parts)!r}; restore the file from the UCF101 split zip")
        numbered[int(parts[0])] = parts[1]
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise CvgError(f"{path}: class numbers must run 1..{len(numbered)} once each; restore "
                       f"the file from the UCF101 split zip")
    return [numbered[k] for k in range(1, len(numbered) + 1)]


def _ucf_folders_match(root: str, folder: str) -> bool:
    """classInd.txt beside an unrelated dataset (ROOT/..) must not claim it."""
    try:
        names = {c.lower() for c in _read_class_ind(folder)}
    except CvgError:
        return True  # claim it: the user sees the file's error, not a wrong layout
    return any(d.lower() in names for d in _subfolders(root))


def _ucf101(root: str, folder: str, split: str | None) -> DatasetListing:
    classes = _read_class_ind(folder)
    by_name = {c.lower(): k for k, c in enumerate(classes)}
    rels, _, _ = _walk_videos(root, root)
    if split is None:
        items, unknown, case = [], [], 0
        for rel in rels:
            top = rel.split(os.sep)[0] if os.sep in rel else ""
            label = by_name.get(top.lower())
            if label is None:
                unknown.append(rel)
                continue
            case += top != classes[label]
            items.append((rel, label))
        if unknown:
            warnings.warn(
                f"{root}: left out {len(unknown):,} videos outside the class folders named in "
                f"{folder}/classInd.txt (e.g. {', '.join(unknown[:_EXAMPLES])})", stacklevel=3)
        if not items:
            raise CvgError(f"no videos in the UCF101 class folders of {root} (classes from "
                           f"{folder}/classInd.txt); point at the folder holding "
                           f"ApplyEyeMakeup/ ... YoYo/")
        return DatasetListing(root, "ucf101", classes, sorted(items, key=_by_label),
                              case_matched=case)

    m = re.fullmatch(r"(train|test)([123])?", split.lower())
    if m is None:
        raise CvgError(f"unknown split {split!r} for the UCF101 layout of {root}; use --split "
                       f"with one of {', '.join(UCF_SPLITS)} (train/test = fold 1)")
    name = f"{m.group(1)}{m.group(2) or '1'}"
    path = os.path.join(folder, f"{m.group(1)}list0{name[-1]}.txt")
    if not os.path.isfile(path):
        have = [f"{k}{n}" for k in ("train", "test") for n in "123"
                if os.path.isfile(os.path.join(folder, f"{k}list0{n}.txt"))]
        raise CvgError(f"{path} not found, so split {name} is not available; splits found in "
                       f"{folder}: {', '.join(have) or 'none'}")
    exact = set(rels)
    lower = {}
    for rel in rels:
        lower.setdefault(rel.lower(), rel)
    items, missing, case, seen = [], [], 0, set()
    for lineno, parts in _read_lines(path):
        listed = parts[0].replace("/", os.sep)
        if listed in seen:
            continue
        seen.add(listed)
        top = listed.split(os.sep)[0]
        label = by_name.get(top.lower())
        if len(parts) > 1:
            given = int(parts[1]) - 1 if parts[1].isdigit() else -1
            if not 0 <= given < len(classes) or (label is not None and label != given):
                raise CvgError(
                    f"{path}:{lineno}: label {parts[1]} does not match class {top} of "
                    f"{folder}/classInd.txt; restore the split files from the UCF101 split zip")
            label = given
        if label is None:
            raise CvgError(f"{path}:{lineno}: class folder {top!r} is not in "
                           f"{folder}/classInd.txt; restore the split files from the UCF101 "
                           f"split zip")
        if listed in exact:
            items.append((listed, label))
        elif listed.lower() in lower:
            items.append((lower[listed.lower()], label))
            case += 1
        else:
            missing.append(parts[0])
    if not items:
        raise CvgError(f"none of the {len(missing):,} videos listed in {path} is under {root}; "
                       f"point at the folder holding ApplyEyeMakeup/ ... YoYo/")
    _warn_missing(root, missing, len(items) + len(missing), path)
    return DatasetListing(root, "ucf101", classes, sorted(items, key=_by_label), split=name,
                          missing=missing, case_matched=case)


def _by_label(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


# --------------------------------------------------------------------------- Kinetics


def _csv_header(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            row = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [c.strip().lower() for c in row]


def _find_kinetics_csvs(root: str) -> list[str]:
    """CSVs in ROOT or ROOT/annotations whose header names youtube_id, time_start, time_end."""
    found = []
    for folder in (root, os.path.join(root, "annotations")):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if (name.lower().endswith(".csv") and not name.startswith(".")
                    and os.path.isfile(path) and _KINETICS_COLUMNS <= set(_csv_header(path))):
                found.append(path)
    return found


def _split_from_name(path: str) -> str | None:
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    for word in re.split(r"[^a-z]+", stem)[::-1]:
        if word in _KINETICS_SPLIT:
            return _KINETICS_SPLIT[word]
    return None


def _read_kinetics_csv(path: str) -> list[tuple[str | None, str, str | None]]:
    """[(label or None, clip name without suffix, split or None)] of one CSV."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    cols = {c.strip().lower(): k for k, c in enumerate(rows[0])}
    from_name = _split_from_name(path)
    out = []
    for lineno, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            yid = row[cols["youtube_id"]].strip()
            start = int(float(row[cols["time_start"]]))
            end = int(float(row[cols["time_end"]]))
        except (IndexError, ValueError):
            raise CvgError(f"{path}:{lineno}: expected youtube_id,time_start,time_end values, "
                           f"got {','.join(row)!r}; fix or remove the line") from None
        label = row[cols["label"]].strip() if "label" in cols and cols["label"] < len(row) else ""
        split = row[cols["split"]].strip().lower() if "split" in cols and cols["split"] < len(row) \
            else ""
        out.append((label or None, f"{yid}_{start:06d}_{end:06d}",
                    _KINETICS_SPLIT.get(split, from_name)))
    return out


def _kinetics(root: str, csvs: list[str], split: str | None) -> DatasetListing:
    want = None
    if split is not None:
        want = _KINETICS_SPLIT.get(split.lower()) if split.lower() in KINETICS_SPLITS else None
        if want is None:
            raise CvgError(f"unknown split {split!r} for the Kinetics layout of {root}; use "
                           f"--split with one of {', '.join(KINETICS_SPLITS)}")
    rows, seen = [], set()
    for path in csvs:
        for label, clip, row_split in _read_kinetics_csv(path):
            if clip not in seen:
                seen.add(clip)
                rows.append((label, clip, row_split, path))
    classes = sorted({label for label, _, _, _ in rows if label is not None})
    splits = sorted({s for _, _, s, _ in rows if s is not None})
    if want is not None:
        rows = [r for r in rows if r[2] == want]
        if not rows:
            raise CvgError(f"no CSV rows of split {want} in {', '.join(csvs)}; splits found: "
                           f"{', '.join(splits) or 'none'} (add {want}.csv to {root})")
    unlabeled = [r for r in rows if r[0] is None]
    if unlabeled and want is not None:
        raise CvgError(f"{unlabeled[0][3]} has no label for split {want}; train on a labelled "
                       f"split (e.g. --split train) or add the label column")
    if unlabeled:
        warnings.warn(f"{root}: left out {len(unlabeled):,} CSV rows without a label "
                      f"(e.g. {unlabeled[0][1]} in {unlabeled[0][3]})", stacklevel=3)
        rows = [r for r in rows if r[0] is not None]
    if not classes:
        raise CvgError(f"no labelled rows in {', '.join(csvs)}; the Kinetics CSVs need a label "
                       f"column")
    on_disk: dict[str, list[str]] = {}
    for rel in _walk_videos(root, root)[0]:
        on_disk.setdefault(os.path.splitext(os.path.basename(rel))[0], []).append(rel)
    index = {c: k for k, c in enumerate(classes)}
    items, missing = [], []
    for label, clip, row_split, _ in rows:
        found = on_disk.get(clip)
        if not found:
            missing.append(f"{clip}.mp4")
            continue
        # the same clip in two split folders: take the one under this row's split folder
        pick = [r for r in found if _KINETICS_SPLIT.get(r.split(os.sep)[0].lower()) == row_split]
        items.append(((pick or found)[0], index[label]))
    source = ", ".join(sorted({os.path.basename(path) for _, _, _, path in rows}))
    if not items:
        raise CvgError(f"none of the {len(missing):,} clips listed in {source} is under {root}; "
                       f"clips must be named {{youtube_id}}_{{start:06d}}_{{end:06d}}.mp4, "
                       f"e.g. {missing[0] if missing else '-'}")
    _warn_missing(root, missing, len(items) + len(missing), source)
    return DatasetListing(root, "kinetics", classes, sorted(items, key=_by_label), split=want,
                          missing=missing)
