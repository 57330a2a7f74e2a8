"""bench/seed_spread.py's seed list and its per-version summary (the training it runs is
the demo's level 1, covered by the training tests)."""

import importlib.util

from test_distributed import ROOT


def _module():
    spec = importlib.util.spec_from_file_location("seed_spread", ROOT / "bench" / "seed_spread.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_seeds():
    m = _module()
    assert m.parse_seeds("10-12,15") == [10, 11, 12, 15]
    assert m.parse_seeds("3") == [3]


def test_summary_groups_by_label_in_order():
    m = _module()
    rows = [{"label": "old", "seed": 1, "fvdsynth_16f": 100.0, "accsynth": 0.5},
            {"label": "new", "seed": 1, "fvdsynth_16f": 90.0, "accsynth": 1.0},
            {"label": "old", "seed": 2, "fvdsynth_16f": 120.0, "accsynth": 1.0}]
    old, new = m.summary(rows)
    assert old.startswith("old") and "n=2" in old and "fvdsynth_16f 110.0 +- 14.1" in old
    assert "accsynth 75.0% +- 35.4" in old and "(seeds 1,2)" in old
    assert new.startswith("new") and "n=1" in new and "fvdsynth_16f 90.0 +- 0.0" in new
