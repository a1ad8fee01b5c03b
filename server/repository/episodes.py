"""Episodes: idempotent upload with checks, summaries with paging, and the trainer's reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from dclaw.task import episode_succeeded
from server import arrays
from server.errors import Conflict, InvalidInput, NotFound
from server.models import Episode, GateDecision, PolicySnapshot, Run, utcnow
from server.repository.runs import get_run

_ARRAY_COLUMNS = ("observations", "actions", "rewards", "timestamps")


@dataclass
class EpisodeArrays:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    timestamps: np.ndarray


@dataclass
class UploadResult:
    episode: Episode
    created: bool  # False: a retry, answered with the first upload's result


def add_episode(
    session: Session,
    *,
    run_id: int,
    idempotency_key: str,
    runner: str,
    seq: int,
    policy_kind: str,
    policy_version: int,
    decision_id: int,
    observations: list,
    actions: list,
    rewards: list,
    timestamps: list,
    timing: dict[str, float],
) -> UploadResult:
    """Stores one episode once. A retry (same key, or same runner and seq) with the same content
    returns the stored episode; the same key or (runner, seq) with other content is a Conflict.

    Three statements on the common path (ingest speed): the run with both reference checks,
    INSERT ... ON CONFLICT DO NOTHING, and the commit; the first two built once, with the values
    bound at execution (`_RUN_AND_REFERENCES`, `_insert_new`)."""
    config, has_policy, has_decision = _run_and_references(
        session, run_id, policy_kind, policy_version, decision_id)
    data = check_arrays(config, observations, actions, rewards, timestamps)
    if not has_policy:
        newest = session.scalar(select(func.max(PolicySnapshot.version)).where(
            PolicySnapshot.run_id == run_id, PolicySnapshot.kind == policy_kind))
        raise InvalidInput(f"run {run_id} has no {policy_kind} policy version {policy_version} "
                           f"(newest: {newest if newest is not None else 'none'})")
    if not has_decision:
        raise InvalidInput(f"run {run_id} has no gate decision {decision_id}")
    digest = content_sha256(data, runner=runner, seq=seq, policy_kind=policy_kind,
                            policy_version=policy_version, decision_id=decision_id,
                            timing=timing)
    values = dict(
        run_id=run_id, runner=runner, seq=seq, idempotency_key=idempotency_key,
        content_sha256=digest, policy_kind=policy_kind, policy_version=policy_version,
        decision_id=decision_id, steps=int(data.actions.shape[0]),
        observations=arrays.encode(data.observations, data.observations.shape, "observations"),
        actions=arrays.encode(data.actions, data.actions.shape, "actions"),
        rewards=arrays.encode(data.rewards, data.rewards.shape, "rewards"),
        timestamps=arrays.encode(data.timestamps, data.timestamps.shape, "timestamps"),
        episode_return=float(data.rewards.sum(dtype=np.float64)),
        success=episode_succeeded(data.observations),
        timing=dict(timing), train_index=None, created_at=utcnow(),
    )
    try:
        new_id = session.execute(_insert_new(session.get_bind().dialect.name), values).scalar()
    except IntegrityError as exc:  # a foreign key: the run went away meanwhile
        raise NotFound(f"no run with id {run_id}") from exc
    if new_id is None:  # the key or (runner, seq) is taken: a retry, or a clash
        first = _earlier_upload(session, run_id, idempotency_key, runner, seq, digest)
        if first is None:
            raise Conflict("a concurrent upload clashed with this one; retry it")
        return UploadResult(first, created=False)
    return UploadResult(Episode(id=new_id, **values), created=True)


def _run_and_references(session: Session, run_id: int, kind: str, version: int,
                        decision_id: int) -> tuple[dict[str, Any], bool, bool]:
    row = session.execute(_RUN_AND_REFERENCES, {
        "run_id": run_id, "kind": kind, "version": version, "decision_id": decision_id,
    }).one_or_none()
    if row is None:
        raise NotFound(f"no run with id {run_id}")
    return row[0], bool(row[1]), bool(row[2])


# The upload's two statements, built once on the tables (Core, not the ORM) with the values
# bound at execution: building them per upload (`insert(Episode).values(**values)`: coercing
# each value, a fresh cache key) cost more Python time than the rest of the upload together.
_runs, _snapshots, _decisions = Run.__table__, PolicySnapshot.__table__, GateDecision.__table__
_RUN_AND_REFERENCES = select(
    _runs.c.config,
    select(_snapshots.c.id).where(
        _snapshots.c.run_id == bindparam("run_id"), _snapshots.c.kind == bindparam("kind"),
        _snapshots.c.version == bindparam("version")).exists(),
    select(_decisions.c.id).where(
        _decisions.c.id == bindparam("decision_id"),
        _decisions.c.run_id == bindparam("run_id")).exists(),
).where(_runs.c.id == bindparam("run_id"))


@cache
def _insert_new(dialect: str):
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: None when the idempotency key or
    (runner, seq) is taken. The columns come from the parameters at execution."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Episode.__table__
    return insert(table).on_conflict_do_nothing().returning(table.c.id)


def check_arrays(config: dict[str, Any], observations, actions, rewards,
                 timestamps) -> EpisodeArrays:
    """The arrays as float32, or InvalidInput naming the first thing wrong with them."""
    steps, obs_dim, act_dim = config["episode_steps"], config["obs_dim"], config["act_dim"]
    data = EpisodeArrays(
        observations=_as_array("observations", observations, (steps + 1, obs_dim)),
        actions=_as_array("actions", actions, (steps, act_dim)),
        rewards=_as_array("rewards", rewards, (steps,)),
        timestamps=_as_array("timestamps", timestamps, None),
    )
    if data.timestamps.shape not in ((steps + 1,), (steps,)):
        raise InvalidInput(f"timestamps has shape {data.timestamps.shape}, expected "
                           f"({steps + 1},) or ({steps},) (one per tick)")
    if np.any(np.diff(data.timestamps.astype(np.float64)) < 0):
        raise InvalidInput("timestamps decrease: they must be the ticks' times in order")
    return data


def _as_array(name: str, values: list, shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{name} is not a rectangular array of numbers") from exc
    if shape is not None and array.shape != shape:
        raise InvalidInput(f"{name} has shape {array.shape}, expected {shape} for this run")
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name} holds NaN or infinite values")
    if np.abs(array).max(initial=0.0) > np.finfo(np.float32).max:
        raise InvalidInput(f"{name} holds values too large for float32")
    return array.astype(np.float32)


def content_sha256(data: EpisodeArrays, **fields: Any) -> str:
    """What makes two uploads the same episode: every field and the float32 bytes."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name in _ARRAY_COLUMNS:
        array = np.ascontiguousarray(getattr(data, name), dtype="<f4")
        digest.update(f"|{name}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _earlier_upload(
    session: Session, run_id: int, key: str, runner: str, seq: int, digest: str
) -> Episode | None:
    summary = _summary_query()
    by_key = session.scalar(summary.where(Episode.run_id == run_id,
                                          Episode.idempotency_key == key))
    if by_key is not None:
        if by_key.content_sha256 != digest:
            raise Conflict(f"Idempotency-Key {key!r} was used for another episode "
                           f"(runner {by_key.runner!r}, seq {by_key.seq}) with different data")
        return by_key
    by_seq = session.scalar(summary.where(Episode.run_id == run_id, Episode.runner == runner,
                                          Episode.seq == seq))
    if by_seq is not None:
        if by_seq.content_sha256 != digest:
            raise Conflict(f"runner {runner!r} already uploaded seq {seq} to run {run_id} "
                           "with different data; sequence numbers must not be reused")
        return by_seq
    return None


def _summary_query():
    return select(Episode).options(*(defer(getattr(Episode, c)) for c in _ARRAY_COLUMNS))


def list_episodes(
    session: Session, *, run_id: int, after: int, limit: int, runner: str | None = None
) -> list[Episode]:
    get_run(session, run_id=run_id)
    query = _summary_query().where(Episode.run_id == run_id, Episode.id > after)
    if runner is not None:
        query = query.where(Episode.runner == runner)
    return list(session.scalars(query.order_by(Episode.id).limit(limit)))


def get_episode(session: Session, *, run_id: int, episode_id: int) -> Episode:
    episode = session.scalar(select(Episode).where(Episode.run_id == run_id,
                                                   Episode.id == episode_id))
    if episode is None:
        raise NotFound(f"run {run_id} has no episode {episode_id}")
    return episode


def episode_arrays(episode: Episode) -> EpisodeArrays:
    data = EpisodeArrays(
        observations=arrays.decode(episode.observations, name="observations"),
        actions=arrays.decode(episode.actions, name="actions"),
        rewards=arrays.decode(episode.rewards, (episode.steps,), "rewards"),
        timestamps=arrays.decode(episode.timestamps, name="timestamps"),
    )
    if data.observations.shape[0] != episode.steps + 1 or data.actions.shape[0] != episode.steps:
        raise arrays.ArrayShapeError(f"episode {episode.id}: stored arrays disagree in length")
    return data


# -- the trainer's side ------------------------------------------------------------------------
def episodes_to_learn(session: Session, *, run_id: int, from_index: int,
                      limit: int) -> list[Episode]:
    """Episodes the trainer has not got in its buffer: those a previous trainer learnt after its
    last checkpoint (train_index >= from_index, in that order), then new ones in upload order."""
    relearn = list(session.scalars(
        select(Episode).where(Episode.run_id == run_id, Episode.train_index >= from_index)
        .order_by(Episode.train_index).limit(limit)))
    if len(relearn) < limit:
        relearn += session.scalars(
            select(Episode).where(Episode.run_id == run_id, Episode.train_index.is_(None))
            .order_by(Episode.id).limit(limit - len(relearn)))
    return relearn


def prior_episodes(session: Session, *, run_id: int, steps: int, limit: int) -> list[Episode]:
    """A run's last `limit` successful episodes of `steps` steps, oldest first (a new run's
    prior episodes)."""
    newest = session.scalars(
        select(Episode).where(Episode.run_id == run_id, Episode.success.is_(True),
                              Episode.steps == steps)
        .order_by(Episode.id.desc()).limit(limit)).all()
    return list(reversed(newest))


def mark_learned(session: Session, *, episode_id: int, train_index: int) -> None:
    session.execute(update(Episode).where(Episode.id == episode_id)
                    .values(train_index=train_index))
