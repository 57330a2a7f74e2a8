"""The quality study over seeds; the same code as `cvg bench quality` (see its --help).

    python bench/quality.py --seeds 0-2 --label main
    python bench/quality.py --seeds 0-2 --label tbptt24 --set train.tbptt_horizon=24
    python bench/quality.py --summarize bench/results/quality
"""

import sys

from cvg_fast.bench_quality import main

if __name__ == "__main__":
    sys.exit(main())
