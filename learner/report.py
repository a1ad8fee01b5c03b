"""Learning curves and the Table-1-style summary of `dclaw train` runs (`dclaw report`).

The paper reports the mean episode return over the whole of training (area under the learning
curve divided by its length) per algorithm, averaged over seeds with 95% confidence intervals
(Sec. 4.1, Table 1), the learning curves (Fig. 2) and the fraction of MF episodes (Fig. 3).
Runs are compared at equal episodes: each is cut to the shortest run in the report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from learner.config import GateConfig
from learner.gate import posterior_misses_mf
from learner.offline import read_episodes, read_run

COLORS = {"unified": "tab:purple", "sac": "tab:blue", "mbrl": "tab:orange"}
KIND_COLORS = {"mf": "tab:blue", "mb": "tab:orange"}
FINAL_WINDOW = 20  # episodes over which the final success rate is measured
MF_WINDOW = 10  # rolling window of the MF fraction (A.2.5's "one in every ten")


@dataclass
class Run:
    path: Path
    algorithm: str
    seed: int
    preset: str
    returns: np.ndarray
    success: np.ndarray
    is_mf: np.ndarray
    learn_seconds: np.ndarray
    # The gate's estimate of the return of the policy that ran (mean over its K masks of
    # J-hat(kind | w_i)); NaN where the gate did not estimate (warm-up, ablations).
    estimated: np.ndarray
    # The highest of the K masks' J-hat(MF | w_i) at each episode's decision; NaN as above.
    mf_max_estimate: np.ndarray


def load_run(path: Path) -> Run:
    meta, rows = read_run(path), read_episodes(path)
    return Run(
        path=path,
        algorithm=meta["algorithm"],
        seed=int(meta["seed"]),
        preset=meta.get("preset", ""),
        returns=np.array([r["return"] for r in rows], dtype=float),
        success=np.array([r["success"] for r in rows], dtype=bool),
        is_mf=np.array([r["policy"] == "mf" for r in rows], dtype=bool),
        learn_seconds=np.array([r["learn_seconds"] for r in rows], dtype=float),
        estimated=np.array([_estimate_of_ran(r) for r in rows], dtype=float),
        mf_max_estimate=np.array([max(r.get("gate", {}).get("j_mf") or [float("nan")])
                                  for r in rows], dtype=float),
    )


def _estimate_of_ran(row: dict) -> float:
    estimates = row.get("gate", {}).get(f"j_{row['policy']}") or []
    return float(np.mean(estimates)) if estimates else float("nan")


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval (Student t over seeds)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def summarize(runs: list[Run]) -> tuple[int, list[dict]]:
    """Per-algorithm rows at the common episode count; returns (episodes, rows)."""
    n = min(len(r.returns) for r in runs)
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.algorithm].append(run)
    rows = []
    for algorithm in sorted(groups, key=lambda a: list(COLORS).index(a) if a in COLORS else 9):
        group = groups[algorithm]
        mean, ci = mean_ci95(np.array([r.returns[:n].mean() for r in group]))
        final = np.array([r.success[max(0, n - FINAL_WINDOW):n].mean() for r in group])
        last = np.array([r.returns[max(0, n - FINAL_WINDOW):n].mean() for r in group])
        rows.append({
            "algorithm": algorithm,
            "seeds": len(group),
            "preset": ",".join(sorted({r.preset for r in group})),
            "mean_return": mean,
            "ci95": ci,
            "final_return": float(last.mean()),
            "final_success": float(final.mean()),
            "mf_fraction": float(np.mean([r.is_mf[:n].mean() for r in group])),
            "learn_seconds": float(np.mean([r.learn_seconds[:n].mean() for r in group])),
        })
    return n, rows


def markdown_table(n: int, rows: list[dict]) -> str:
    lines = [
        f"Mean episode return over {n} training episodes (95% CI over seeds); final = last "
        f"{FINAL_WINDOW} episodes.",
        "",
        "| algorithm | seeds | preset | mean return over training | final return | "
        "final success | MF episodes | learner s/episode |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['algorithm']} | {r['seeds']} | {r['preset']} | "
            f"{r['mean_return']:.1f} ± {r['ci95']:.1f} | {r['final_return']:.1f} | "
            f"{100 * r['final_success']:.0f}% | {100 * r['mf_fraction']:.0f}% | "
            f"{r['learn_seconds']:.2f} |"
        )
    return "\n".join(lines)


def first_window(success: np.ndarray, rate: float = 0.9) -> int | None:
    """The first episode that ends a FINAL_WINDOW-episode window with at least `rate` success
    (the issue's bar, met once), or None."""
    need = int(np.ceil(rate * FINAL_WINDOW))
    counts = np.convolve(success.astype(int), np.ones(FINAL_WINDOW, int), "valid")
    hits = np.flatnonzero(counts >= need)
    return int(hits[0]) + FINAL_WINDOW - 1 if hits.size else None


def per_seed(runs: list[Run], n: int) -> list[dict]:
    """One row per run, over its first n episodes: the figures the summary averages."""
    rows = []
    for run in sorted(runs, key=lambda r: (list(COLORS).index(r.algorithm)
                                           if r.algorithm in COLORS else 9, r.seed)):
        success = run.success[:n]
        first = np.flatnonzero(success)
        rows.append({
            "algorithm": run.algorithm, "seed": run.seed,
            "mean_return": float(run.returns[:n].mean()),
            "final_successes": int(success[max(0, n - FINAL_WINDOW):].sum()),
            "first_success": int(first[0]) if first.size else None,
            "first_90": first_window(success),
            "mf_fraction": float(run.is_mf[:n].mean()),
        })
    return rows


def per_seed_table(rows: list[dict]) -> str:
    lines = [f"Per run: final = successes in the last {FINAL_WINDOW}; ≥ 90% = the episode that "
             f"ends the first {FINAL_WINDOW}-episode window with ≥ 90% success.", "",
             "| algorithm | seed | mean return | final | first success | ≥ 90% at | MF |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['algorithm']} | {r['seed']} | {r['mean_return']:.1f} | "
              f"{r['final_successes']}/{FINAL_WINDOW} | "
              f"{'-' if r['first_success'] is None else r['first_success']} | "
              f"{'-' if r['first_90'] is None else r['first_90']} | "
              f"{100 * r['mf_fraction']:.0f}% |" for r in rows]
    return "\n".join(lines)


def differences(runs: list[Run], n: int) -> list[dict]:
    """Unified RL's mean return over training minus each other algorithm's, with Welch's 95%
    confidence interval over seeds (the issue's bar: unified at least as good as the better
    of SAC and MBRL). Only where both sides have two runs or more."""
    means: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        means[run.algorithm].append(float(run.returns[:n].mean()))
    rows = []
    for other in sorted(set(means) - {"unified"}):
        if len(means["unified"]) < 2 or len(means[other]) < 2:
            continue
        test = stats.ttest_ind(means["unified"], means[other], equal_var=False)
        low, high = test.confidence_interval(0.95)
        rows.append({"other": other, "difference": float(np.mean(means["unified"])
                                                           - np.mean(means[other])),
                     "low": float(low), "high": float(high), "p": float(test.pvalue)})
    return rows


def differences_table(rows: list[dict]) -> str:
    lines = ["Unified RL minus each other algorithm: mean return over training (Welch's t, 95% "
             "CI over seeds).", "", "| unified minus | difference | 95% CI | p |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r['other']} | {r['difference']:+.1f} | {r['low']:+.1f} to {r['high']:+.1f} | "
              f"{r['p']:.2f} |" for r in rows]
    return "\n".join(lines)


def policy_outcomes(runs: list[Run], n: int) -> list[dict]:
    """Within Unified RL runs, the episodes each policy ran in the second half of the first n:
    how often each succeeded and its mean return. MB episodes that fare worse than the MF
    episodes around them are what the gate's MB choices cost."""
    rows = []
    for run in sorted((r for r in runs if r.algorithm == "unified"), key=lambda r: r.seed):
        half = slice(n // 2, n)
        for kind, picked in (("mb", ~run.is_mf[half]), ("mf", run.is_mf[half])):
            if picked.any():
                rows.append({"seed": run.seed, "kind": kind, "episodes": int(picked.sum()),
                             "success": float(run.success[half][picked].mean()),
                             "mean_return": float(run.returns[half][picked].mean())})
    return rows


def policy_outcomes_table(rows: list[dict], n: int) -> str:
    lines = [f"Unified RL: the episodes each policy ran in episodes {n // 2}-{n - 1}.", "",
             "| seed | policy | episodes | success | mean return |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['seed']} | {r['kind'].upper()} | {r['episodes']} | "
              f"{100 * r['success']:.0f}% | {r['mean_return']:.1f} |" for r in rows]
    return "\n".join(lines)


def posterior_check(runs: list[Run], n: int,
                    recent: int = GateConfig.posterior_check_episodes) -> list[dict]:
    """Does the model's posterior cover the MF policy's real return? Per unified run, over the
    gate calls (of the first n episodes) with at least `recent` MF episodes before them: how
    often the mean real return of the last `recent` MF episodes lay above every mask's
    J-hat(MF | w_i), overall and at the calls that chose MB. The EPS test rules MF out only
    when every mask says MB is better; if the real MF return lies outside all of them, the
    masks do not span the model's error (Sec. 3.2 needs them to), and an MB choice there rests
    on a model the MF episodes have already contradicted."""
    rows = []
    for run in sorted((r for r in runs if r.algorithm == "unified"), key=lambda r: r.seed):
        mf_returns: list[float] = []
        calls = above = mb_calls = mb_above = 0
        for i in range(min(n, len(run.returns))):
            if len(mf_returns) >= recent and not np.isnan(run.mf_max_estimate[i]):
                outside = posterior_misses_mf([run.mf_max_estimate[i]], mf_returns, recent)
                calls, above = calls + 1, above + outside
                if not run.is_mf[i]:
                    mb_calls, mb_above = mb_calls + 1, mb_above + outside
            if run.is_mf[i]:
                mf_returns.append(float(run.returns[i]))
        if calls:
            rows.append({"seed": run.seed, "calls": calls, "above": above / calls,
                         "mb_calls": mb_calls, "mb_above": mb_above})
    return rows


def posterior_check_table(rows: list[dict],
                          recent: int = GateConfig.posterior_check_episodes) -> str:
    lines = [f"Unified RL: gate calls where the mean real return of the last {recent} MF "
             "episodes lay above every mask's estimate of the MF policy.", "",
             "| seed | gate calls | real MF above every mask | MB choices | of them, above |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['seed']} | {r['calls']} | {100 * r['above']:.0f}% | {r['mb_calls']} | "
              f"{r['mb_above']} |" for r in rows]
    return "\n".join(lines)


def gate_calibration(runs: list[Run], n: int) -> list[dict]:
    """How far the model's estimate of each episode's policy was from what it really scored.

    Per algorithm and policy kind, over the episodes (of the first n) where the gate estimated
    both policies: the mean real return and the mean of J-hat(kind that ran) - real return.
    A model that overrates one kind more than the other biases the gate towards it (Sec. 3.2:
    the EPS is only as conservative as the model's posterior is honest)."""
    rows = []
    for algorithm in sorted({r.algorithm for r in runs}):
        group = [r for r in runs if r.algorithm == algorithm]
        for kind in ("mb", "mf"):
            real, error = [], []
            for run in group:
                is_kind = run.is_mf[:n] if kind == "mf" else ~run.is_mf[:n]
                picked = is_kind & ~np.isnan(run.estimated[:n])
                real.extend(run.returns[:n][picked])
                error.extend(run.estimated[:n][picked] - run.returns[:n][picked])
            if real:
                rows.append({"algorithm": algorithm, "kind": kind, "episodes": len(real),
                             "real_return": float(np.mean(real)),
                             "overestimate": float(np.mean(error))})
    return rows


def calibration_table(rows: list[dict]) -> str:
    lines = [
        "The gate's estimate of the policy that ran against its real return (episodes where "
        "the gate estimated both policies).",
        "",
        "| algorithm | policy | episodes | mean real return | mean estimate - real |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['algorithm']} | {r['kind'].upper()} | {r['episodes']} | {r['real_return']:.1f} | "
        f"{r['overestimate']:+.1f} |"
        for r in rows
    ]
    return "\n".join(lines)


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, x[0]), x]) if len(x) else x
    return np.convolve(padded, kernel, mode="valid")


def plot_run(run: Run, out: Path) -> None:
    """One run: return per episode coloured by the policy that ran, and the MF fraction."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    episodes = np.arange(len(run.returns))
    for kind, mask in (("mf", run.is_mf), ("mb", ~run.is_mf)):
        top.scatter(episodes[mask], run.returns[mask], s=8, c=KIND_COLORS[kind],
                    label=f"{kind.upper()} episode")
    top.plot(episodes, rolling_mean(run.returns, MF_WINDOW), c="k", lw=1, label="rolling mean")
    top.set_ylabel("episode return")
    top.set_title(f"{run.algorithm}, seed {run.seed} ({run.preset})")
    top.legend(loc="lower right")
    bottom.plot(episodes, rolling_mean(run.is_mf.astype(float), MF_WINDOW), c="tab:blue")
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel(f"MF fraction ({MF_WINDOW} ep.)")
    bottom.set_xlabel("episode")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_comparison(runs: list[Run], n: int, out: Path) -> None:
    """Fig. 2 and Fig. 3 shapes: mean return per algorithm with 95% CI, and MF fraction."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    episodes = np.arange(n)
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.algorithm].append(run)
    for algorithm, group in groups.items():
        curves = np.stack([rolling_mean(r.returns[:n], MF_WINDOW) for r in group])
        mean = curves.mean(0)
        color = COLORS.get(algorithm)
        top.plot(episodes, mean, c=color, label=f"{algorithm} ({len(group)} seeds)")
        if len(group) > 1:
            for curve in curves:  # with 3 seeds the band is wide: show each seed too
                top.plot(episodes, curve, c=color, lw=0.6, alpha=0.4)
            half = stats.t.ppf(0.975, len(group) - 1) * curves.std(0, ddof=1) / np.sqrt(len(group))
            top.fill_between(episodes, mean - half, mean + half, color=color, alpha=0.2)
        if algorithm == "unified":
            mf = np.stack([rolling_mean(r.is_mf[:n].astype(float), MF_WINDOW) for r in group])
            bottom.plot(episodes, mf.mean(0), c=color, label="unified")
    # The axis spans the seeds' curves; a t-interval over 3 seeds may run far beyond them.
    low = min(line.get_ydata().min() for line in top.lines)
    high = max(line.get_ydata().max() for line in top.lines)
    pad = 0.05 * (high - low or 1.0)
    top.set_ylim(low - pad, high + pad)
    top.set_ylabel(f"episode return (rolling {MF_WINDOW})")
    top.legend(loc="lower right")
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel("MF fraction")
    if "unified" not in groups:  # else an empty panel reads like missing data
        bottom.text(0.5, 0.5, "unified runs only (sac always runs MF, mbrl never)",
                    transform=bottom.transAxes, ha="center", va="center", color="0.4")
    bottom.set_xlabel("episode")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
