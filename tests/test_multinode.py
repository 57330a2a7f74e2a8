"""Two torchrun agents on localhost as two nodes (c10d rendezvous, gloo, CPU).

What must hold: both nodes end with identical weights; the run is the same run as two
processes on one node: the global batch is the same clips (StepSampler: rank r of world W
reads positions (step*W + r)*B + j), every draw of a sample is keyed by its global position
(BatchRandom), BN statistics and gradients are all-reduced (the nodes overlapping their
all-reduces with backward, the one-node run after it: the same sums). So that comparison is exact
(torch.equal, no tolerance): the same float operations in the same order on the same CPU,
and a two-rank all-reduce sums a + b, which IEEE addition makes independent of the order.
And it is the run of ONE process with the doubled batch, up to float tolerance: the same
samples, the same noise per sample, BN over the same rows, the mean gradient of the same
2B samples (summed in another order).
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from test_distributed import ROOT, _free_port

# each rank saves its own G and D after training (the checkpoint holds rank 0's only)
_RUN_AND_DUMP = """
import sys
import torch
from cvg_fast.training import trainer
from cvg_fast.training.launch import main

run = trainer.LevelTrainer.run

def run_and_dump(self):
    result = run(self)
    torch.save({"G": self.G.state_dict(), "D": self.D.state_dict()},
               self.dir / f"weights_rank{self.dist.rank}.pt")
    return result

trainer.LevelTrainer.run = run_and_dump
sys.exit(main(sys.argv[1:]))
"""


def _train_args(script, data, out, batch_size=2, extra=()):
    return [str(script), "--level", "1", "--data", str(data), "--out", str(out),
            "--steps", "3", "--batch-size", str(batch_size), "--log-every", "1", "--g-ch", "8",
            "--d-ch", "8", "--num-workers", "0", "--no-progress", "--device", "cpu", *extra]


def _weights(run, rank):
    state = torch.load(run / "level1" / f"weights_rank{rank}.pt", weights_only=True)
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state[net].items()}


def _losses(run):
    with open(run / "level1" / "log.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return [(r["step"], r["loss_d"], r["loss_g"]) for r in rows if "step" in r]


def _assert_same(a, b, what):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {len(differ)} tensors differ, first {differ[0]}"


# A conv bias that feeds a BN has no true gradient (BN subtracts the mean): its float-noise
# gradient, which depends on the summation order, becomes a full +-lr step under Adam, and
# the BN's running mean absorbs the same shift. Those move apart between the two runs
# without changing what G computes; everything else must agree to float tolerance.
_BN_ABSORBED = re.compile(r"G\.(ups\.\d+\.(conv1|conv2|skip)\.bias|.*running_mean)$")


def _assert_close_run(got, want):
    from conftest import narrow_tiny
    from cvg_fast.models import build_generator

    assert got.keys() == want.keys()
    for k in want:
        if not _BN_ABSORBED.match(k):
            torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-4,
                                       msg=lambda m, k=k: f"{k}: {m}")
    # the same function: G's output on fixed inputs, with batch and with running statistics
    cfg = narrow_tiny()
    nets = []
    for state in (got, want):
        g = build_generator(cfg, 1, num_classes=2)
        g.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("G.")})
        nets.append(g)
    gen = torch.Generator().manual_seed(3)
    z, y = torch.randn(4, cfg.z_dim, generator=gen), torch.tensor([0, 1, 0, 1])
    t = cfg.levels[0].frames
    e = torch.randn(4, t, cfg.z_t_dim, generator=gen) if cfg.z_t_dim else None
    for mode in ("train", "eval"):
        with torch.no_grad():
            a, b = (net.train(mode == "train")(z, y, frames=t, frame_noise=e) for net in nets)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m: f"G ({mode}): {m}")


@pytest.mark.slow
def test_two_nodes_on_localhost_equal_one_process_with_the_doubled_batch(synth_data, tmp_path):
    script = tmp_path / "run_and_dump.py"
    script.write_text(_RUN_AND_DUMP)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1"]

    nodes_run, endpoint = tmp_path / "two_nodes", f"127.0.0.1:{_free_port()}"
    t0 = time.time()
    agents = [subprocess.Popen(  # c10d assigns ranks in rendezvous order (node_rank ignored)
        torchrun + ["--nnodes=2", f"--node_rank={node}", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={endpoint}", "--rdzv-id=two_nodes"]
        # the nodes overlap their all-reduces with backward; the one-node run below averages
        # after it (--grad-sync auto is flat on CPU): the same sums, so still bit-equal
        + _train_args(script, synth_data, nodes_run, extra=["--grad-sync", "overlap"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for node in (0, 1)]
    try:
        outputs = [a.communicate(timeout=180)[0] for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
    for node, (a, out) in enumerate(zip(agents, outputs)):
        assert a.returncode == 0, f"node {node}:\n{out[-3000:]}"
    nodes_s = time.time() - t0

    one_node_run = tmp_path / "one_node"
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port", str(_free_port())] + _train_args(script, synth_data, one_node_run),
        capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]

    one_process_run = tmp_path / "one_process"  # no torchrun, batch 2 x 2
    p = subprocess.run([sys.executable] + _train_args(script, synth_data, one_process_run, 4),
                       capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]

    node_weights = [_weights(nodes_run, rank) for rank in (0, 1)]
    _assert_same(node_weights[0], node_weights[1], "rank 0 vs rank 1 of the two-node run")
    _assert_same(node_weights[0], _weights(one_node_run, 0), "two nodes vs two processes")
    _assert_close_run(node_weights[0], _weights(one_process_run, 0))
    losses = _losses(nodes_run)
    assert [s for s, _, _ in losses] == [1, 2, 3]
    assert losses == _losses(one_node_run)
    from cvg_fast.models.checkpoint import checkpoint_path, load_checkpoint

    state = load_checkpoint(checkpoint_path(nodes_run, 1))
    assert state["step"] == 3 and state["world"] == 2
    # training moved G: the equality above is not that of two untouched networks
    from conftest import narrow_tiny
    from cvg_fast.models import build_generator

    torch.manual_seed(0)  # the trainer's initial weights: seed 0, the same on every process
    g0 = build_generator(narrow_tiny(), 1, num_classes=2).state_dict()
    assert g0.keys() == state["G"].keys()
    assert not all(torch.equal(g0[k], state["G"][k]) for k in g0)
    # ... and it moved G well beyond the one-process comparison's tolerance (atol 1e-5)
    moved = max(float((state["G"][k].float() - g0[k].float()).abs().max()) for k in g0
                if g0[k].is_floating_point())
    assert moved > 1e-4, moved
    # rank 0 alone writes TensorBoard: one event file, though two nodes share the folder
    assert len(list((nodes_run / "level1" / "tb").glob("events.out.tfevents.*"))) == 1
    assert nodes_s < 60, f"the two-node run took {nodes_s:.0f}s"
