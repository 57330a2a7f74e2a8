"""Preemption: SIGTERM/SIGINT stop every rank after the same step, saved, exit 0, resumable."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cvg_fast.training.preemption import StopRequest
from test_distributed import ROOT, _free_port

ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
# narrow networks, 1 loader worker per rank (the process-group case), a line per step
TRAIN = ["--level", "1", "--batch-size", "2", "--g-ch", "8", "--d-ch", "8", "--num-workers", "1",
         "--log-every", "1", "--no-progress", "--device", "cpu"]


def test_a_signal_sets_the_stop_with_one_process():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(world=1) as stop:
        assert not stop.agreed(1) and stop.signal_name is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.agreed(2) and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the old handler is back


def test_check_every_delays_the_stop_to_its_multiples():
    with StopRequest(world=1, check_every=3) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert [stop.agreed(s) for s in (4, 5, 6)] == [False, False, True]
        assert stop.signal_name == "SIGINT"
    with pytest.raises(ValueError, match="check_every"):
        StopRequest(check_every=0)


def test_a_repeated_signal_acts_at_once_unless_it_is_a_duplicate():
    with StopRequest(world=1, repeat_after_s=60) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # within 60 s: the same request (SLURM + torchrun)
        assert stop.agreed(1)
    # Python's own SIGINT handler before ours (a background or nohup shell, as CI runs
    # under, starts the process with SIGINT ignored: nothing would act then)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopRequest(world=1, repeat_after_s=0) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):  # the handler before ours acts at once
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, before)


def _agree_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        stops = []
        for check_every in (1, 4):
            with StopRequest(world=2, check_every=check_every) as stop:
                step = 0
                while True:
                    step += 1
                    if rank == 1 and step == 2:  # only rank 1 is signalled, after step 2
                        os.kill(os.getpid(), signal.SIGTERM)
                    if stop.agreed(step):
                        break
                stops.append([step, stop.signal_name])
        (out / f"rank{rank}.json").write_text(json.dumps(stops))
    finally:
        dist.barrier()
        dist.destroy_process_group()


def test_ranks_agree_on_one_stop_step(tmp_path):
    # fork: no re-import of torch in the children (spawn took ~9 s on 2 busy cores)
    mp.start_processes(_agree_worker, args=(_free_port(), tmp_path), nprocs=2, join=True,
                       start_method="fork")
    stops = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert stops[0] == stops[1] == [[2, "SIGTERM"], [4, "SIGTERM"]]


def test_loader_workers_ignore_stop_signals():
    from cvg_fast.training import data

    it = iter(data.make_loader(_Clips(), 2, 0, 1, 0, 0, num_workers=1))
    next(it)
    worker = it._workers[0]
    os.kill(worker.pid, signal.SIGTERM)
    os.kill(worker.pid, signal.SIGINT)
    time.sleep(0.2)
    assert [next(it)["video"].shape[0] for _ in range(4)] == [2] * 4  # the worker lives on
    data._stop_workers_at_exit()  # what runs at exit, before multiprocessing's own hook
    assert not worker.is_alive()


class _Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, key):
        return {"video": torch.full((1,), float(key[0]))}


@pytest.mark.slow
def test_loader_workers_ignore_stop_signals_and_still_exit(tmp_path):
    """A worker outlives SIGTERM; at exit (a crash's traceback keeping the iterator alive,
    where multiprocessing's terminate-then-join would wait for ever) it is shut down."""
    script = tmp_path / "loader.py"
    script.write_text(
        "import os, signal, sys, time, torch\n"
        "from cvg_fast.training.data import make_loader\n"
        "class Clips(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 8\n"
        "    def __getitem__(self, key): return torch.tensor(float(key[0]))\n"
        "it = iter(make_loader(Clips(), 2, 0, 1, 0, 0, num_workers=1))\n"
        "next(it)\n"
        "pid = it._workers[0].pid\n"
        "os.kill(pid, signal.SIGTERM); os.kill(pid, signal.SIGINT); time.sleep(0.3)\n"
        "[next(it) for _ in range(6)]\n"
        "print(pid, flush=True)\n"
        "raise RuntimeError('crash')\n")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV,
                       timeout=60)
    assert p.returncode == 1 and "RuntimeError: crash" in p.stderr, p.stderr[-2000:]
    assert not os.path.exists(f"/proc/{p.stdout.split()[0]}")


# ------------------------------------------------------------- end to end, as a scheduler would

def _wait_for_steps(run, proc, n: int, timeout: float = 120) -> None:
    log = run / "level1" / "log.jsonl"
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the run ended before it was signalled"
        if log.exists() and len(log.read_text().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {n} steps in {log} after {timeout}s")


def _no_process_left(run) -> bool:
    """No process (a rank, a DataLoader worker) still has the run folder on its command line."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(run).encode() in f.read():
                    return False
        except OSError:
            continue
    return True


def _losses(run) -> dict:
    """{step: {loss name: value}} from log.jsonl (the timing fields left out)."""
    rows = [json.loads(line) for line in (run / "level1" / "log.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k not in ("step", "steps_per_s",
                                                                 "data_wait_pct")}
            for r in rows if "step" in r}


def _check_stop_and_resume(run, ref, out: str, launch) -> None:
    """The stop line, the checkpoint at its step, then --resume for 2 more steps has the
    losses of an uninterrupted run (`launch(args)` runs one training to completion)."""
    from cvg_fast.models.checkpoint import checkpoint_path, load_checkpoint

    m = re.search(r"stopped by SIGTERM after step (\d+): saved (\S+); continue with the same "
                  r"command plus --resume", out)
    assert m, out[-3000:]
    k = int(m.group(1))
    assert m.group(2) == str(checkpoint_path(run, 1))
    assert load_checkpoint(checkpoint_path(run, 1))["step"] == k >= 3
    assert not (run / "level1" / "samples").exists()  # no samples at a preemption stop
    t0 = time.time()
    while not _no_process_left(run):  # DataLoader workers exit with their parent
        assert time.time() - t0 < 15, "a process of the stopped run is still alive"
        time.sleep(0.2)
    launch(["--out", str(run), "--steps", str(k + 2), "--resume"])
    launch(["--out", str(ref), "--steps", str(k + 2)])
    a, b = _losses(run), _losses(ref)
    assert sorted(a) == sorted(b) == list(range(1, k + 3))
    for step in (k + 1, k + 2):
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step


@pytest.mark.slow
def test_sigterm_to_torchrun_saves_every_rank_and_resumes(synth_data, tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"

    def torchrun(port):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port", str(port)]

    # each rank under `sh`, which reports its exit code (torchrun does not after a signal)
    wrapped = torchrun(_free_port()) + [
        "--no-python", "sh", "-c", 'trap : TERM INT; "$@"; echo "rank $RANK exit $?"', "sh",
        sys.executable, str(ROOT / "train" / "level.py"), "--data", str(synth_data),
        "--out", str(run), "--steps", "1000"] + TRAIN
    proc = subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ENV)
    try:
        _wait_for_steps(run, proc, 3)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    seconds = time.time() - t0
    assert "rank 0 exit 0" in out and "rank 1 exit 0" in out, out[-3000:]
    assert seconds < 25 and "forcefully" not in out and "error:" not in out, out[-3000:]
    # torchrun itself re-raises the signal as SignalException after its workers are done
    assert proc.returncode == 1 and "got signal: 15" in out

    def launch(args):
        p = subprocess.run(torchrun(_free_port()) + [str(ROOT / "train" / "level.py"),
                                                     "--data", str(synth_data)] + args + TRAIN,
                           capture_output=True, text=True, env=ENV, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]

    _check_stop_and_resume(run, ref, out, launch)


@pytest.mark.slow
def test_sigterm_to_one_process_saves_and_resumes(synth_data, tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"
    cmd = [sys.executable, str(ROOT / "train" / "level.py"), "--data", str(synth_data)] + TRAIN
    proc = subprocess.Popen(cmd + ["--out", str(run), "--steps", "1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        _wait_for_steps(run, proc, 3)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and time.time() - t0 < 25, out[-3000:]

    def launch(args):
        p = subprocess.run(cmd + args, capture_output=True, text=True, env=ENV, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]

    _check_stop_and_resume(run, ref, out, launch)
