"""The bad videos of one training run: dropped at indexing, or failed while training.

`VideoFolder` (skip_bad) drops unreadable and too-short files when it is built
(`skipped_at_start`), and when a clip fails to decode later it falls back to the next
video inside a DataLoader worker process, where the trainer cannot see it; the item
then names the failed files in item["skipped"] (a string; a batch holds a list of
them). This tally reads both, warns once per newly failed file with a running count,
gathers the files every rank met, and at the end prints ONE line and writes
RUN/level{L}/bad_videos.txt (`path<TAB>reason` per line) so nothing is skipped unseen.
Datasets without those fields (in-memory clips) report nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch.distributed as torch_dist

REPORT_NAME = "bad_videos.txt"


class BadVideoTally:
    """Counts the run's bad videos; `add` each batch, `finish` once at the end."""

    def __init__(self, dataset):
        self.at_start: list[tuple[str, str]] = list(getattr(dataset, "skipped_at_start", []))
        self.in_training: dict[str, str] = {}  # path -> reason, in the order first met
        if hasattr(dataset, "warn_on_read"):
            dataset.warn_on_read = False  # `add` warns instead, counted, in the main process

    def add(self, batch: dict) -> None:
        """Note the files a batch's items skipped; warn once for each new one."""
        skipped = batch.get("skipped") if isinstance(batch, dict) else None
        if not skipped:
            return
        from cvg_fast.data.video_folder import parse_skipped  # PyAV only when there is news

        for text in [skipped] if isinstance(skipped, str) else skipped:
            for path, reason in parse_skipped(text):
                if path in self.in_training:
                    continue
                self.in_training[path] = reason
                warnings.warn(
                    f"{path}: {reason}; skipped (--skip-bad-videos), its clips come from the "
                    f"next video: {len(self.in_training)} bad video(s) met while training so far",
                    stacklevel=2,
                )

    def _gather(self, world: int) -> dict[str, str]:
        """Every rank's training-time failures (a collective: call on every rank)."""
        if world == 1 or not (torch_dist.is_available() and torch_dist.is_initialized()):
            return dict(self.in_training)
        parts: list = [None] * world
        torch_dist.all_gather_object(parts, self.in_training)
        merged: dict[str, str] = {}
        for part in parts:
            for path, reason in part.items():
                merged.setdefault(path, reason)
        return merged

    def finish(self, run_dir: Path, world: int = 1, is_main: bool = True,
               gather: bool = True) -> list[tuple[str, str]]:
        """[(path, "at indexing: ..." | "while training: ...")] of the whole run; rank 0
        prints the one-line report and writes (or, with none, removes) RUN/level{L}/bad_videos.txt.
        gather=False skips the cross-rank collective (a run ending in an exception)."""
        training = self._gather(world) if gather else dict(self.in_training)
        bad = ([(p, f"at indexing: {r}") for p, r in self.at_start]
               + [(p, f"while training: {r}") for p, r in training.items()])
        if not is_main:
            return bad
        path = Path(run_dir) / REPORT_NAME
        try:
            if bad:
                text = "".join(f"{p}\t{r}\n" for p, r in bad)
                tmp = path.with_name(f".{REPORT_NAME}.partial")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)
            else:
                path.unlink(missing_ok=True)  # a stale list from an earlier run would mislead
        except OSError as exc:
            warnings.warn(f"{path}: could not write the bad-video list ({exc.strerror})",
                          stacklevel=2)
        if bad:
            print(f"skipped {len(bad)} bad videos: {len(self.at_start)} at indexing "
                  f"(unreadable/too short), {len(training)} while training; list in {path}",
                  flush=True)
        return bad
