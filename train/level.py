#!/usr/bin/env python
"""torchrun entry point: train ONE level of a CVG cascade.

    torchrun --nproc_per_node=2 train/level.py --preset tiny --level 1 --data DATA --out RUN
    python train/level.py --preset tiny --level 2 --data DATA --out RUN   # one process

See `python train/level.py --help` for every option.
"""

import sys

from cvg_fast.errors import run_main
from cvg_fast.training.launch import main

if __name__ == "__main__":
    sys.exit(run_main(main))
