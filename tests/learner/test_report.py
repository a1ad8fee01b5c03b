"""`learner.report`: the per-run, difference, per-policy and gate-calibration tables against
hand-computed figures."""

from pathlib import Path

import numpy as np
from scipy import stats

from learner.report import (
    Run,
    calibration_table,
    differences,
    first_window,
    gate_calibration,
    per_seed,
    per_seed_table,
    policy_outcomes,
    posterior_check,
)

NAN = float("nan")


def _run(algorithm, returns, is_mf, estimated, success=None, seed=0):
    n = len(returns)
    success = np.zeros(n, bool) if success is None else np.array(success, bool)
    return Run(Path("."), algorithm, seed, "cpu-small", np.array(returns, dtype=float),
               success, np.array(is_mf), np.zeros(n), np.array(estimated, dtype=float),
               np.full(n, NAN))


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


def test_the_90_percent_window_is_the_first_with_18_of_20():
    success = np.zeros(60, bool)
    success[10:27] = True  # 17 in a row: never 18 of 20
    assert first_window(success) is None
    success[28] = True  # episodes 10-26 and 28: 18 successes in episodes 9-28
    assert first_window(success) == 28


def test_per_seed_rows_cut_at_the_common_episodes():
    wins = [False] * 5 + [True] * 25
    run = _run("sac", list(range(30)), [True] * 30, [NAN] * 30, success=wins, seed=4)
    (row,) = per_seed([run], n=25)
    assert row == {"algorithm": "sac", "seed": 4, "mean_return": 12.0, "final_successes": 20,
                   "first_success": 5, "first_90": 22, "mf_fraction": 1.0}  # 18 of 3-22
    assert "| sac | 4 | 12.0 | 20/20 | 5 | 22 | 100% |" in per_seed_table([row])


def test_differences_are_welch_intervals_of_unified_minus_each_other():
    unified = [_run("unified", [m] * 4, [True] * 4, [NAN] * 4) for m in (-100, -300, -200)]
    sac = [_run("sac", [m] * 4, [True] * 4, [NAN] * 4) for m in (0, -50)]
    lone = [_run("mbrl", [-700] * 4, [False] * 4, [NAN] * 4)]  # one seed: no interval
    (row,) = differences(unified + sac + lone, n=4)
    expected = stats.ttest_ind([-100, -300, -200], [0, -50], equal_var=False)
    assert row["other"] == "sac" and row["difference"] == -175.0
    assert (row["low"], row["high"]) == tuple(expected.confidence_interval(0.95))
    assert row["p"] == expected.pvalue


def test_policy_outcomes_split_the_second_half_by_the_policy_that_ran():
    run = _run("unified", [0, 0, -500, 100, -300, 300], [True, True, False, True, False, True],
               [NAN] * 6, success=[0, 0, 0, 1, 0, 1], seed=2)
    assert policy_outcomes([run, _run("sac", [0] * 6, [True] * 6, [NAN] * 6)], n=6) == [
        {"seed": 2, "kind": "mb", "episodes": 1, "success": 0.0, "mean_return": -300.0},
        {"seed": 2, "kind": "mf", "episodes": 2, "success": 1.0, "mean_return": 200.0},
    ]


def test_posterior_check_compares_recent_real_mf_returns_with_every_masks_estimate():
    # MF returns -600, -500 (mean of the last 2: -550 at episode 2, -450 at 3 and 4).
    run = _run("unified", [-600, -500, -400, -700, -300], [True, True, True, False, True],
               [NAN] * 5, seed=1)
    run.mf_max_estimate = np.array([NAN, NAN, -560.0, -400.0, -500.0])
    # Episode 2: -550 > -560 (outside); 3 (MB): -450 < -400 (inside); 4: -450 > -500.
    assert posterior_check([run], n=5, recent=2) == [
        {"seed": 1, "calls": 3, "above": 2 / 3, "mb_calls": 1, "mb_above": 0}]
