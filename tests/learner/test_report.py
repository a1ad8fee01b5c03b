"""`learner.report`: the gate-calibration table against hand-computed figures."""

from pathlib import Path

import numpy as np

from learner.report import Run, calibration_table, gate_calibration

NAN = float("nan")


def _run(algorithm, returns, is_mf, estimated):
    n = len(returns)
    return Run(Path("."), algorithm, 0, "cpu-small", np.array(returns, dtype=float),
               np.zeros(n, bool), np.array(is_mf), np.zeros(n), np.array(estimated, dtype=float))


def test_calibration_splits_by_the_policy_that_ran_and_skips_unestimated_episodes():
    # Episode 0 is warm-up (no estimate); MB episodes were overrated by 50 and 30, the MF one
    # underrated by 20. The sac run never had the gate estimate anything.
    unified = _run("unified", [-700, -600, -650, -500], [True, False, False, True],
                   [NAN, -550, -620, -520])
    sac = _run("sac", [-700, -690, -680, -670], [True] * 4, [NAN] * 4)
    rows = gate_calibration([unified, sac], n=4)
    assert rows == [
        {"algorithm": "unified", "kind": "mb", "episodes": 2, "real_return": -625.0,
         "overestimate": 40.0},
        {"algorithm": "unified", "kind": "mf", "episodes": 1, "real_return": -500.0,
         "overestimate": -20.0},
    ]
    assert "| unified | MB | 2 | -625.0 | +40.0 |" in calibration_table(rows)


def test_calibration_counts_only_the_common_episodes():
    long = _run("unified", [-600, -600, 0], [False, False, False], [-500, -500, 900])
    assert gate_calibration([long], n=2)[0]["overestimate"] == 100.0
