"""`dclaw train` and `dclaw report` as a user runs them: tiny budgets, real simulator."""

import json
import subprocess

import pytest

# cpu-small, cut down further for a smoke test: 2 warm-up episodes, fewer updates and masks.
TINY = {"warmup_episodes": 2, "sac__updates_per_episode": 5, "dynamics__updates_per_episode": 3,
        "mb_policy__updates_per_episode": 2, "gate__num_masks": 8, "gate__rollouts_per_mask": 2}
TRAIN = ["train", "--preset", "cpu-small", "--no-progress", "--checkpoint-every", "2",
         *(arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}"))]


def _train(dclaw_cmd, out, algo, episodes, seed=0, extra=()):
    return subprocess.run(
        [*dclaw_cmd, *TRAIN, "--algo", algo, "--episodes", str(episodes), "--seed", str(seed),
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=300,
    )


def _said(result) -> str:
    """stderr as one line: typer's error box wraps long messages (and paths) over lines."""
    return " ".join(result.stderr.replace("│", " ").split())


def _rows(out):
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_writes_records_checkpoint_and_curve_then_resumes(dclaw_cmd, tmp_path):
    out = tmp_path / "unified"
    first = _train(dclaw_cmd, out, "unified", 4)
    assert first.returncode == 0, first.stderr
    rows = _rows(out)
    assert [r["episode"] for r in rows] == [0, 1, 2, 3]
    assert {"return", "success", "policy", "reason", "gate", "learner", "learn_seconds"} <= set(
        rows[0]
    )
    assert rows[0]["reason"] == "warm-up"
    # After the warm-up the gate itself decides, with K pairs of estimates on record.
    gated = [r for r in rows if r["reason"] in ("eps", "forced-mf", "model-check")]
    assert gated, [r["reason"] for r in rows]
    assert len(gated[0]["gate"]["j_mb"]) == gated[0]["gate"]["num_masks"] > 0
    assert (out / "checkpoint.pt").exists()
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"

    # A run begun before a setting existed takes the setting's default (off), which cpu-small
    # has since changed: the refusal names it, and the run resumes with its own value.
    meta = json.loads((out / "run.json").read_text())
    del meta["config"]["gate"]["posterior_check"]
    (out / "run.json").write_text(json.dumps(meta))
    refused = _train(dclaw_cmd, out, "unified", 6)
    assert refused.returncode == 2
    assert "gate__posterior_check: run false, now true" in refused.stderr
    again = _train(dclaw_cmd, out, "unified", 6, extra=("--set", "gate__posterior_check=false"))
    assert again.returncode == 0, again.stderr
    assert [r["episode"] for r in _rows(out)] == list(range(6))  # resumed, nothing repeated


@pytest.mark.slow
def test_ablations_keep_to_their_policy_and_report_compares(dclaw_cmd, tmp_path):
    for algo in ("sac", "mbrl"):
        done = _train(dclaw_cmd, tmp_path / algo, algo, 4)
        assert done.returncode == 0, done.stderr
    sac_rows, mbrl_rows = _rows(tmp_path / "sac"), _rows(tmp_path / "mbrl")
    assert {r["policy"] for r in sac_rows} == {"mf"}
    # mbrl runs MB after its warm-up, always, with reason "ablation".
    assert all(r["policy"] == "mb" for r in mbrl_rows if r["reason"] != "warm-up")
    assert any(r["reason"] == "ablation" for r in mbrl_rows)

    report = subprocess.run(
        [*dclaw_cmd, "report", str(tmp_path / "sac"), str(tmp_path / "mbrl"),
         "--out", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=120,
    )
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| sac | 1 |" in table and "| mbrl | 1 |" in table
    assert (tmp_path / "report" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_train_refuses_an_unknown_preset_and_a_changed_config(dclaw_cmd, tmp_path):
    bad = subprocess.run(
        [*dclaw_cmd, "train", "--preset", "huge", "--episodes", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "cpu-small" in bad.stderr

    assert _train(dclaw_cmd, tmp_path / "run", "sac", 1, seed=0).returncode == 0
    changed = _train(dclaw_cmd, tmp_path / "run", "sac", 2, seed=1)
    assert changed.returncode == 2 and "another configuration" in changed.stderr
    assert "seed: run 0, now 1" in changed.stderr
    assert len(_rows(tmp_path / "run")) == 1  # the first run's record is untouched


def test_train_refuses_a_bad_override(dclaw_cmd, tmp_path):
    for bad in ("sac__no_such_field=1", "warmup_episodes", "algorithm=ppo"):
        out = subprocess.run(
            [*dclaw_cmd, "train", "--preset", "cpu-small", "--episodes", "1", "--set", bad,
             "--out", str(tmp_path / "x")],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 2, (bad, out.stderr)
        assert "--set" in out.stderr and "Traceback" not in out.stderr


def test_report_refuses_a_directory_without_runs(dclaw_cmd, tmp_path):
    bad = subprocess.run(
        [*dclaw_cmd, "report", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "episodes.jsonl" in bad.stderr


def _donor(path, final_errors):
    """A run directory whose buffer holds one episode per final valve error (rad)."""
    import numpy as np

    from dclaw import task
    from learner.agent import UnifiedAgent
    from learner.checkpoint import save_checkpoint
    from learner.config import make_config

    agent = UnifiedAgent(make_config("cpu-small", algorithm="sac", device="cpu"))
    rng = np.random.default_rng(0)
    for error in final_errors:
        obs = rng.normal(size=(41, task.OBS_DIM)).astype(np.float32)
        obs[:, task.OBS_TARGET_ERROR] = 3.0
        obs[-1, task.OBS_TARGET_ERROR] = error
        agent.observe_episode(obs, rng.uniform(-1, 1, (40, task.ACTION_DIM)), rng.normal(size=40))
    path.mkdir()
    save_checkpoint(agent, path / "checkpoint.pt")
    return [bool(task.success(e)) for e in final_errors]


def test_train_starts_from_a_prior_runs_successful_episodes_and_keeps_to_that_source(
        dclaw_cmd, tmp_path):
    donor, out = tmp_path / "donor", tmp_path / "run"
    assert _donor(donor, [3.0, 0.02, 1.5, -0.05, 2.0]) == [False, True, False, True, False]
    done = _train(dclaw_cmd, out, "sac", 1, extra=("--prior", str(donor), "--prior-count", "5"))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["prior"] == {
        "source": str(donor.resolve()), "episodes": 2}  # the two successful ones
    from learner.checkpoint import load_checkpoint
    agent = load_checkpoint(out / "checkpoint.pt", restore_rng=False)
    assert (agent.prior_episodes, agent.episodes_seen, len(agent.buffer)) == (2, 1, 3)
    final_errors = agent.buffer.all_trajectories().obs[:2, -1, 20].tolist()
    assert final_errors == pytest.approx([0.02, -0.05])  # oldest first

    # Resuming with the same source (or none) goes on; with another it is refused.
    assert _train(dclaw_cmd, out, "sac", 2).returncode == 0
    other = _train(dclaw_cmd, out, "sac", 3, extra=("--prior", str(tmp_path / "else")))
    assert other.returncode == 2 and "began with prior episodes from" in _said(other)
    assert len(_rows(out)) == 2


def test_train_refuses_a_prior_run_without_a_checkpoint_or_a_success(dclaw_cmd, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = _train(dclaw_cmd, tmp_path / "a", "sac", 1, extra=("--prior", str(empty)))
    assert missing.returncode == 2 and "holds no checkpoint" in _said(missing)
    _donor(tmp_path / "failed", [3.0, 2.0])
    failed = _train(dclaw_cmd, tmp_path / "b", "sac", 1,
                    extra=("--prior", str(tmp_path / "failed")))
    assert failed.returncode == 2 and "holds no successful episode" in _said(failed)
    assert "Traceback" not in missing.stderr + failed.stderr
    assert not (tmp_path / "a" / "episodes.jsonl").exists()
