"""The README's SLURM scripts (multi-node; preemption and requeue), run as written on
localhost with stand-ins for SLURM.

No SLURM here, so `scontrol` and `srun` are two small shell scripts: `scontrol show
hostnames` names this machine, `srun` starts its command once per node (as many as the
script's #SBATCH line asks) and fails if any copy fails. What changes in the script is only what
names the cluster: 8 GPUs per node -> 1 CPU process, the kinetics600 preset and data ->
a narrow tiny run on synthetic clips, port 29500 -> a free one, runs/k600 -> a temp dir.
The rest (the head node from the node list, the rendezvous, the requeue's `--resume`) runs
as printed. Run twice: the first job trains and checkpoints; the "requeued" second one
finds the checkpoint, adds --resume and continues from its step.
"""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_distributed import ROOT, _free_port


# (the README text just before the script, nodes the script asks for)
_SCRIPTS = {"multi-node": ("On SLURM, one task per node:", 2),
            "preemption": ("On SLURM (preemption by requeue", 1)}


def _readme_slurm_script(anchor: str) -> str:
    text = (ROOT / "README.md").read_text()
    at = text.index(anchor)
    block = re.search(r"```bash\n(.*?)```", text[at:], re.S)
    assert block, f"README: no bash block after {anchor!r}"
    return "\n".join(line.strip() for line in block.group(1).splitlines())


def _stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir()
    scripts = {
        "scontrol": '[ "$1 $2" = "show hostnames" ] || exit 2\necho 127.0.0.1\n',
        # one copy of the command per node, like srun with --ntasks-per-node=1
        "srun": 'pids=""\nfor node in $(seq 1 "$SLURM_NNODES"); do "$@" & pids="$pids $!"; '
                'done\nrc=0\nfor p in $pids; do wait $p || rc=1; done\nexit $rc\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _for_this_machine(script: str, data: Path, out: Path, steps: int, nodes: int) -> str:
    subs = [
        (f"#SBATCH --nodes={nodes}", None),  # the stand-in srun starts this many copies
        ("--nproc_per_node=8", "--nproc_per_node=1"),
        ("OUT=runs/k600", f"OUT={out}"),
        ("--preset kinetics600", "--preset tiny"),
        ("/data/kinetics600/train", str(data)),
    ] + ([("29500", str(_free_port()))] if nodes > 1 else [])
    for old, new in subs:
        assert old in script, f"the README's SLURM script no longer has {old!r}: update this test"
        script = script if new is None else script.replace(old, new)
    narrow = (f" --steps {steps} --batch-size 2 --g-ch 8 --d-ch 8 --num-workers 0 --log-every 1 "
              f"--checkpoint-every 2 --no-progress --device cpu")
    assert script.rstrip().endswith("$RESUME")
    return script.rstrip() + narrow + "\n"


def _run_job(script: str, tmp_path: Path, job_id: str, nodes: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), SLURM_NNODES=str(nodes),
               SLURM_JOB_NODELIST="node[01-02]", SLURM_JOB_ID=job_id,
               PATH=f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    job = tmp_path / f"job{job_id}.sh"
    job.write_text(script)
    return subprocess.run(["bash", str(job)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("which", sorted(_SCRIPTS))
def test_readme_slurm_script_trains_and_requeues_with_resume(which, synth_data, tmp_path):
    anchor, nodes = _SCRIPTS[which]
    _stand_ins(tmp_path / "bin")
    out = tmp_path / "k600"
    readme = _readme_slurm_script(anchor)

    first = _run_job(_for_this_machine(readme, synth_data, out, 2, nodes), tmp_path, "101", nodes)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert (out / "level1" / "checkpoint.pt").is_file()
    state = torch.load(out / "level1" / "checkpoint.pt", weights_only=True, map_location="cpu")
    assert (state["world"], state["step"]) == (nodes, 2)  # every "node" joined the one run
    log = [json.loads(line) for line in open(out / "level1" / "log.jsonl")]
    assert [r["step"] for r in log if "loss_d" in r] == [1, 2]

    # the requeued job: the same script, more steps; it must pick up --resume by itself (a
    # run into an existing OUT without --resume or --overwrite refuses to start)
    second = _run_job(_for_this_machine(readme, synth_data, out, 4, nodes), tmp_path, "102",
                      nodes)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    log = [json.loads(line) for line in open(out / "level1" / "log.jsonl")]
    assert [r["step"] for r in log if "loss_d" in r] == [1, 2, 3, 4]
    state = torch.load(out / "level1" / "checkpoint.pt", weights_only=True, map_location="cpu")
    assert (state["world"], state["step"]) == (nodes, 4)
