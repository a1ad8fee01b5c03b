"""One run's trainer: Alg. 1 driven by the episodes in SQL.

`load()` restores the newest checkpoint (or builds a fresh agent from the run's config); each
`step()` learns from the episodes the agent has not seen (those a previous trainer learnt after its
last checkpoint, then new uploads), runs the gate, and stores in one fenced transaction: which
episodes it learnt (their `train_index`), one metrics row per episode, the policies whose version
changed, and the decision. `checkpoint()` saves the whole agent. The buffer lives in memory: SQL
is read once per step, never per gradient step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from learner.agent import UnifiedAgent
from learner.checkpoint import agent_from_bytes, checkpoint_bytes
from learner.export import ExportedPolicy, export_policy
from server.db import transaction
from server.metrics import TrainerMetrics
from server.repository import episodes as episodes_repo
from server.repository import learning as learning_repo
from server.repository.leases import Claim, fence
from server.repository.runs import get_run
from server.run_config import config_for_trainer
from server.settings import Settings
from server.trainer.checkpoints import CheckpointStore

log = logging.getLogger(__name__)

# Which stats time which updates: rate/<name>_updates_per_s = updates / seconds.
_RATES = {"sac": ("time/sac_s", "sac"), "model": ("time/model_s", "dynamics"),
          "mb_policy": ("time/mb_policy_s", "mb_policy")}


@dataclass
class Learnt:
    episode_id: int
    train_index: int
    seconds: float
    stats: dict[str, float]


class RunTrainer:
    def __init__(self, *, claim: Claim, settings: Settings,
                 session_factory: sessionmaker[Session], metrics: TrainerMetrics | None = None):
        self.claim, self.settings, self.factory = claim, settings, session_factory
        self.metrics = metrics or TrainerMetrics()
        self.store = CheckpointStore(settings.checkpoint_dir)
        self.agent: UnifiedAgent | None = None
        self.checkpointed_at = -1  # agent.episodes_seen at the newest checkpoint
        self.published: dict[str, int] = {}  # kind -> version stored by this trainer
        self.needs_decision = True

    @property
    def run_id(self) -> int:
        return self.claim.run_id

    @contextmanager
    def fenced(self) -> Iterator[Session]:
        """A transaction that first proves (and renews) this trainer's lease."""
        with transaction(self.factory) as session:
            fence(session, claim=self.claim, now=time.time(), ttl_s=self.settings.lease_ttl_s)
            yield session

    # -- start ---------------------------------------------------------------------------------
    def load(self) -> UnifiedAgent:
        with transaction(self.factory) as session:
            run = get_run(session, run_id=self.run_id)
            config = config_for_trainer(run.config, self.settings.device)
            newest = learning_repo.latest_checkpoint(session, run_id=self.run_id)
            data = self.store.load(newest) if newest is not None else None
            prior = None
            if data is None and run.prior:
                rows = episodes_repo.prior_episodes(
                    session, run_id=run.prior["run_id"], steps=config.episode_steps,
                    limit=run.prior["count"])
                prior = [episodes_repo.episode_arrays(row) for row in rows]
        if data is None:
            agent = UnifiedAgent(config)
            log.info("run %d: fresh %s agent", self.run_id, config.algorithm)
            if prior is not None:
                added = agent.add_prior_episodes(
                    (e.observations, e.actions, e.rewards) for e in prior)
                # Fewer than asked when the source run has since lost some (or was deleted).
                log.info("run %d: %d prior episodes of run %d in the buffer (%d asked)",
                         self.run_id, added, run.prior["run_id"], run.prior["count"])
        else:
            agent = agent_from_bytes(data, device=config.device)
            self.checkpointed_at = agent.episodes_seen
            log.info("run %d: resumed from the checkpoint at %d episodes", self.run_id,
                     agent.episodes_seen)
        self.agent = agent
        with self.fenced() as session:
            self._reconcile_versions(session)
        return agent

    def _kinds(self) -> list[str]:
        assert self.agent is not None
        return ["mf", "mb"] if self.agent.uses_model else ["mf"]

    def _reconcile_versions(self, session: Session) -> None:
        """After a takeover the previous trainer may have stored versions past our checkpoint;
        versions name exactly one document, so ours continue after the newest stored."""
        assert self.agent is not None
        for kind in self._kinds():
            mine = self.agent.versions[kind]
            newest = learning_repo.newest_version(session, run_id=self.run_id, kind=kind)
            if newest is None or newest < mine:
                continue
            if newest == mine:
                stored = learning_repo.snapshot_sha256(session, run_id=self.run_id, kind=kind,
                                                       version=mine)
                if stored == self._export(kind).sha256:
                    self.published[kind] = mine
                    continue
            self.agent.versions[kind] = newest + 1
            log.info("run %d: %s policy versions continue at %d", self.run_id, kind, newest + 1)

    # -- learning ------------------------------------------------------------------------------
    def step(self, interrupted: Callable[[], bool] = lambda: False) -> int:
        """Learns from the unseen episodes (at most a batch), decides, stores; returns how many
        episodes it learnt from (0 and no writes when there was nothing to do).

        `interrupted` is asked after each episode: when it says true (a stop or a shutdown),
        the rest of the batch waits for the next step, so a stop takes one episode's learning,
        not a batch's (16 episodes can be minutes on a busy CPU)."""
        agent = self.agent
        assert agent is not None, "call load() first"
        with transaction(self.factory) as session:
            rows = episodes_repo.episodes_to_learn(
                session, run_id=self.run_id, from_index=agent.episodes_seen,
                limit=self.settings.trainer_batch_episodes)
            batch = [(row.id, row.policy_kind, episodes_repo.episode_arrays(row))
                     for row in rows]
        if not batch and not self.needs_decision:
            return 0
        learnt = []
        for episode_id, kind, data in batch:
            learnt.append(self._learn_one(episode_id, kind, data))
            if interrupted():
                break
        record = _json_safe(agent.decide().to_dict())
        exports = [self._export(kind) for kind in self._kinds()
                   if self.published.get(kind) != agent.versions[kind]]
        with self.fenced() as session:
            for item in learnt:
                episodes_repo.mark_learned(session, episode_id=item.episode_id,
                                           train_index=item.train_index)
                learning_repo.add_metric(
                    session, run_id=self.run_id, episode_id=item.episode_id,
                    episodes_seen=item.train_index + 1, learn_seconds=item.seconds,
                    stats=item.stats)
            for export in exports:
                self._store_export(session, export)
            learning_repo.add_decision(session, run_id=self.run_id,
                                       episodes_seen=agent.episodes_seen, record=record,
                                       trainer=self.claim.owner)
        for export in exports:
            self.published[export.header["kind"]] = export.header["version"]
        self.needs_decision = False
        self.metrics.decisions.labels(record["choice"]).inc()
        self.metrics.episodes_learned.inc(len(learnt))
        if agent.episodes_seen - max(self.checkpointed_at, 0) >= self.settings.checkpoint_every:
            self.checkpoint()
        return len(learnt)

    def _learn_one(self, episode_id: int, kind: str,
                   data: episodes_repo.EpisodeArrays) -> Learnt:
        agent = self.agent
        assert agent is not None
        start = time.perf_counter()
        stats = agent.observe_episode(data.observations, data.actions, data.rewards,
                                      policy_kind=kind)
        seconds = time.perf_counter() - start
        self.metrics.learn_seconds.observe(seconds)
        return Learnt(episode_id, agent.episodes_seen - 1, seconds,
                      {**_finite(stats), **self._rates(stats)})

    def _rates(self, stats: dict[str, float]) -> dict[str, float]:
        assert self.agent is not None
        config = self.agent.config
        rates = {}
        for name, (timer, section) in _RATES.items():
            seconds = stats.get(timer)
            updates = getattr(config, section).updates_per_episode
            if seconds and seconds > 0:
                rates[f"rate/{name}_updates_per_s"] = updates / seconds
        return rates

    def _export(self, kind: str) -> ExportedPolicy:
        assert self.agent is not None
        return export_policy(self.agent.policy(kind), kind, self.agent.versions[kind])

    def _store_export(self, session: Session, export: ExportedPolicy) -> None:
        kind, version = export.header["kind"], export.header["version"]
        stored = learning_repo.snapshot_sha256(session, run_id=self.run_id, kind=kind,
                                               version=version)
        if stored == export.sha256:
            return
        if stored is not None:
            raise RuntimeError(f"run {self.run_id}: {kind} v{version} is stored with other "
                               "weights; versions must name one document")
        learning_repo.add_snapshot(session, run_id=self.run_id, kind=kind, version=version,
                                   data=export.data, sha256=export.sha256, header=export.header,
                                   trainer=self.claim.owner, keep=self.settings.policies_kept)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        agent = self.agent
        assert agent is not None
        stored = self.store.save(run_id=self.run_id, episodes_seen=agent.episodes_seen,
                                 generation=self.claim.generation, data=checkpoint_bytes(agent))
        with self.fenced() as session:
            stale = learning_repo.add_checkpoint(
                session, run_id=self.run_id, episodes_seen=agent.episodes_seen,
                data=stored.data, path=stored.path, sha256=stored.sha256, size=stored.size,
                trainer=self.claim.owner, keep=self.settings.checkpoints_kept)
        self.store.remove(stale)
        self.checkpointed_at = agent.episodes_seen
        self.metrics.checkpoints.inc()
        log.info("run %d: checkpoint at %d episodes (%d bytes)", self.run_id,
                 agent.episodes_seen, stored.size)

    def checkpoint_if_behind(self) -> None:
        if self.agent is not None and self.agent.episodes_seen != max(self.checkpointed_at, 0):
            self.checkpoint()


def _json_safe(value):
    """The gate record with non-finite numbers (a diverged model's estimates) as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _finite(stats: dict[str, float]) -> dict[str, float]:
    """JSON has no NaN: a diverged loss is recorded as missing rather than breaking the row."""
    return {k: float(v) for k, v in stats.items() if math.isfinite(float(v))}
