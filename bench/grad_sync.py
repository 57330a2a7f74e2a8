"""Overlapped vs flat gradient averaging, side by side in one torchrun job.

    torchrun --nproc_per_node=2 bench/grad_sync.py --preset tiny --level 2 --device cpu

Each process builds the level's trainer twice, --grad-sync overlap and flat, on the same
fixed random batch, and times train_step in alternating blocks (so drift hits both). It
also times what the step spends inside the averaging call after backward: the whole
all-reduce for flat, only the wait for the last buckets for overlap. Prints one table on
rank 0 and writes bench/results/grad_sync_<preset>_L<level>_<device>_w<world>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from cvg_fast.bench_train import _bench_cfg, _fixed_batch, _sync, machine_info, make_lower_levels
from cvg_fast.config import get_preset
from cvg_fast.data.random_clips import RandomClips
from cvg_fast.training import LevelTrainer
from cvg_fast.training import distributed as D


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--level", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None, help="per process (default: preset's)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per block")
    p.add_argument("--blocks", type=int, default=3, help="alternating blocks per mode")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="bench/results")
    a = p.parse_args()
    base = get_preset(a.preset)
    cfg = _bench_cfg(base, a.batch_size or base.train.batch_size, num_classes=4)
    top = cfg.levels[-1]
    data = RandomClips(top.frames * cfg.frame_stride, top.size, num_classes=4)
    batch = _fixed_batch(data, cfg.train.batch_size)
    with tempfile.TemporaryDirectory() as tmp:  # one per process
        lower = Path(tmp) / "lower"
        if a.level > 1:  # each process its own copy, before the process group exists: the
            # lower levels train as one process (their synchronised BN would otherwise wait
            # for the other ranks)
            make_lower_levels(cfg, a.level - 1, lower, data)
        dist = D.init_distributed(a.device)
        trainers, spent = {}, {}
        for mode in ("overlap", "flat"):
            c = cfg.copy()
            c.train.grad_sync = mode
            tr = LevelTrainer(c, a.level, data, Path(tmp) / f"{mode}_{dist.rank}", lower, dist,
                              overwrite=True, progress=False)
            inner, spent[mode] = tr._average_gradients, [0.0]

            def timed(name, loss, inner=inner, acc=spent[mode]):
                t0 = time.perf_counter()
                out = inner(name, loss)
                _sync(dist.device)
                acc[0] += time.perf_counter() - t0
                return out

            tr._average_gradients = timed
            for _ in range(2):  # warm-up
                tr.train_step(batch)
                tr.step += 1
            spent[mode][0] = 0.0
            trainers[mode] = tr
        times = {m: 0.0 for m in trainers}
        for _ in range(a.blocks):
            for mode, tr in trainers.items():
                D.barrier()
                _sync(dist.device)
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    tr.train_step(batch)
                    tr.step += 1
                _sync(dist.device)
                times[mode] += time.perf_counter() - t0
        params = {n: sum(p.numel() for p in getattr(trainers["flat"], n).parameters())
                  for n in ("G", "D")}
    n = a.blocks * a.steps
    rows = {m: {"ms_per_step": times[m] / n * 1e3, "ms_in_averaging": spent[m][0] / n * 1e3}
            for m in times}
    if dist.is_main:
        print(f"{machine_info(dist.device)['device_name']}, world {dist.world}, preset {a.preset} "
              f"level {a.level}, batch {cfg.train.batch_size}/process, gradients "
              f"G {params['G'] * 4 / 2**20:.1f} MiB + D {params['D'] * 4 / 2**20:.1f} MiB fp32, "
              f"{n} steps per mode in {a.blocks} alternating blocks")
        print(f"  {'mode':8s} {'ms/step':>8s} {'ms in averaging':>16s}")
        for m, r in rows.items():
            print(f"  {m:8s} {r['ms_per_step']:8.1f} {r['ms_in_averaging']:16.2f}")
        ratio = rows["flat"]["ms_per_step"] / rows["overlap"]["ms_per_step"]
        print(f"  overlap vs flat: {ratio:.3f}x step speed")
        out = Path(a.out) / (f"grad_sync_{a.preset}_L{a.level}_{dist.device.type}"
                             f"_w{dist.world}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine_info(dist.device), "world": dist.world,
                                   "preset": a.preset, "level": a.level,
                                   "batch_per_process": cfg.train.batch_size,
                                   "params": params, "rows": rows,
                                   "flat_over_overlap": ratio}, indent=2))
        print(f"numbers: {out}")
    D.shutdown_distributed()


if __name__ == "__main__":
    main()
