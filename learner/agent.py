"""Unified RL (Alg. 1) as an object: the trainer of one run calls it once per episode.

    agent = UnifiedAgent(make_config("dclaw-paper"))
    record = agent.decide()                      # which policy runs the next episode
    ... run agent.policy(record.choice) for T steps ...
    stats = agent.observe_episode(obs, actions, rewards)   # buffer + all updates

Algorithm "unified" trains SAC, the dynamics model and the model-based policy and lets the EPS
gate choose; the ablations use the same code: "sac" never touches the model-based parts and
always runs MF, "mbrl" skips SAC and always runs MB. Until `warmup_episodes` episodes are in the
buffer nothing is trained and the (untrained, stochastic) MF policy runs, reason "warm-up".
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from dclaw.task import OBS_DIM, turn_valve
from learner import gate
from learner.buffer import EpisodeBuffer, TransitionBatch
from learner.config import AgentConfig, config_to_dict, resolve_device
from learner.dynamics import DynamicsModel, DynamicsTrainer
from learner.gate import MB, MF, GateRecord
from learner.mb_policy import MBPolicyLearner
from learner.networks import TanhGaussianPolicy
from learner.sac import SAC

log = logging.getLogger(__name__)


class UnifiedAgent:
    """SAC, the dropout-LSTM model, the model-based policy and the gate over one buffer."""

    def __init__(self, config: AgentConfig):
        self.config = config
        self.device = torch.device(resolve_device(config.device))
        torch.manual_seed(config.seed)  # network initialisation and sampling noise
        self.generator = torch.Generator().manual_seed(config.seed)  # buffer and mask draws
        # Rollout lengths left as None in the config are the episode length T.
        steps = config.episode_steps
        c = dataclasses.replace(
            config,
            gate=dataclasses.replace(config.gate, horizon=config.gate.horizon or steps),
            mb_policy=dataclasses.replace(
                config.mb_policy, horizon=config.mb_policy.horizon or steps
            ),
        )
        self.resolved_config = c
        self.buffer = EpisodeBuffer(c.obs_dim, c.act_dim, c.episode_steps, self.device)
        # config.valve_symmetry: each episode turned by +-120 degrees, for SAC's batches only
        # (the model, the MB policy and the gate see the task's own start states).
        self.turned: EpisodeBuffer | None = None
        if c.valve_symmetry:
            if c.obs_dim != OBS_DIM:
                raise ValueError(f"valve_symmetry needs D'Claw's {OBS_DIM} observations, "
                                 f"not obs_dim={c.obs_dim}")
            self.turned = EpisodeBuffer(c.obs_dim, c.act_dim, c.episode_steps, self.device)
        # The MF policy exists in every algorithm: it is the warm-up policy too.
        self.sac = SAC(c.obs_dim, c.act_dim, c.sac, c.gamma, self.device)
        self.model: DynamicsModel | None = None
        self.model_trainer: DynamicsTrainer | None = None
        self.mb: MBPolicyLearner | None = None
        if self.uses_model:
            self.model = DynamicsModel(c.obs_dim, c.act_dim, c.dynamics).to(self.device)
            self.model_trainer = DynamicsTrainer(self.model, c.dynamics)
            self.mb = MBPolicyLearner(c.obs_dim, c.act_dim, c.mb_policy, c.gamma, self.device)
        self.versions = {MF: 0, MB: 0}
        self.recent_choices: deque[str] = deque(maxlen=max(1, c.gate.mf_every))
        # Real returns of the latest MF episodes, for the gate's optional posterior check.
        self.recent_mf_returns: deque[float] = deque(maxlen=max(1, c.gate.posterior_check_episodes))
        self.episodes_seen = 0
        self.prior_episodes = 0  # episodes of earlier runs in the buffer (add_prior_episodes)

    @property
    def uses_model(self) -> bool:
        return self.config.algorithm in ("unified", "mbrl")

    @property
    def uses_sac(self) -> bool:
        return self.config.algorithm in ("unified", "sac")

    @property
    def learning_started(self) -> bool:
        # The run's own episodes: prior episodes do not shorten the warm-up.
        return self.episodes_seen >= self.config.warmup_episodes

    def add_prior_episodes(self, episodes: Iterable[tuple[Any, Any, Any]]) -> int:
        """Adds episodes of an earlier run, (obs, actions, rewards) each, to the buffer before
        this run's first episode; returns how many. They train SAC, the model and the MB policy
        like the run's own but are not counted as its episodes (`episodes_seen`).

        Not in the paper. Its SAC follows Ball et al. (2023, RLPD), whose point is that a few
        prior episodes lift online RL past its exploration: a cpu-small seed that never sees a
        full turn learns one from five successful episodes of another seed (docs/BENCHMARKS.md,
        "Why a seed stalls"). A run that starts this way is not learning from scratch."""
        if self.episodes_seen:
            raise ValueError("prior episodes go in before the run's first episode")
        added = 0
        for obs, actions, rewards in episodes:
            self._store(obs, actions, rewards)
            added += 1
        self.prior_episodes += added
        return added

    # -- Alg. 1, lines 3-4 and 14 ---------------------------------------------------------------
    def observe_episode(
        self, obs: Any, actions: Any, rewards: Any, terminated: bool = False,
        policy_kind: str | None = None,
    ) -> dict[str, float]:
        """Adds one episode (obs (T+1, obs_dim), actions (T, act_dim), rewards (T,)) and runs
        this episode's updates; returns losses and timings (empty of losses during warm-up).
        `policy_kind` is the policy that ran it; None: the latest decision's choice."""
        self._store(obs, actions, rewards, terminated)
        kind = policy_kind or (self.recent_choices[-1] if self.recent_choices else MF)
        if kind == MF:
            self.recent_mf_returns.append(float(np.asarray(rewards, dtype=np.float64).sum()))
        self.episodes_seen += 1
        stats: dict[str, float] = {"buffer/episodes": float(len(self.buffer))}
        if self.prior_episodes:  # how many of those came from an earlier run
            stats["buffer/prior_episodes"] = float(self.prior_episodes)
        if not self.learning_started:
            return stats
        if self.uses_model:
            stats.update(self._train_model_based())
        if self.uses_sac:
            stats.update(self._train_sac())
        return stats

    def _store(self, obs: Any, actions: Any, rewards: Any, terminated: bool = False) -> None:
        self.buffer.add_episode(obs, actions, rewards, terminated)
        self._store_turned(obs, actions, rewards, terminated)

    def _store_turned(self, obs: Any, actions: Any, rewards: Any, terminated: bool) -> None:
        if self.turned is None:
            return
        # From the float32 values the buffer holds, so a restored run rebuilds the same copies.
        obs, rewards = np.asarray(obs, np.float32), np.asarray(rewards, np.float32)
        for turns in (1, -1):
            turned_obs, turned_rewards = turn_valve(obs, rewards, turns)
            self.turned.add_episode(turned_obs, actions, turned_rewards, terminated)

    def _sac_batch(self, size: int) -> TransitionBatch:
        """Uniform over every stored transition, the valve-turned copies included, or with
        `valve_symmetry_share` of the batch turned."""
        if self.turned is None:
            return self.buffer.sample_transitions(size, self.generator)
        share = self.config.valve_symmetry_share
        if share is None:
            share = len(self.turned) / (len(self.buffer) + len(self.turned))
        own = size - round(size * share)
        mine = self.buffer.sample_transitions(own, self.generator)
        theirs = self.turned.sample_transitions(size - own, self.generator)
        return TransitionBatch(*(torch.cat(pair) for pair in zip(mine, theirs, strict=True)))

    def _train_model_based(self) -> dict[str, float]:
        assert self.model_trainer is not None and self.mb is not None and self.model is not None
        stats: dict[str, float] = {}
        start = time.perf_counter()
        stats.update(self.model_trainer.train(self.buffer, self.generator))
        stats["time/model_s"] = time.perf_counter() - start
        start = time.perf_counter()
        updates = self.config.mb_policy.updates_per_episode
        for _ in range(updates):
            stats.update(self.mb.update(self.model, self.buffer, self.generator).to_dict())
        stats["time/mb_policy_s"] = time.perf_counter() - start
        if updates:
            self.versions[MB] += 1
        return stats

    def _train_sac(self) -> dict[str, float]:
        stats: dict[str, float] = {}
        start = time.perf_counter()
        cfg = self.config.sac
        for _ in range(cfg.updates_per_episode):
            batch = self._sac_batch(cfg.batch_size)
            stats.update(self.sac.update(batch).to_dict())
        stats["time/sac_s"] = time.perf_counter() - start
        if cfg.updates_per_episode:
            self.versions[MF] += 1
        return stats

    # -- Alg. 1, lines 5-10 ----------------------------------------------------------------------
    def decide(self) -> GateRecord:
        """Which policy runs the next episode, and why."""
        versions = (self.versions[MB], self.versions[MF])
        algorithm = self.config.algorithm
        if not self.learning_started:
            record = GateRecord(MF, "warm-up", mb_version=versions[0], mf_version=versions[1])
        elif algorithm == "sac":
            record = GateRecord(MF, "ablation", mb_version=versions[0], mf_version=versions[1])
        elif algorithm == "mbrl":
            record = GateRecord(MB, "ablation", mb_version=versions[0], mf_version=versions[1])
        else:
            assert self.model is not None and self.mb is not None
            record = gate.decide(
                self.model,
                self.mb.policy,
                self.sac.actor,
                self.buffer.initial_observations(),
                self.resolved_config.gate,
                recent_choices=list(self.recent_choices),
                versions=versions,
                generator=self.generator,
                recent_mf_returns=list(self.recent_mf_returns),
            )
        self.recent_choices.append(record.choice)
        log.debug("episode %d: run %s (%s)", self.episodes_seen, record.choice, record.reason)
        return record

    # -- policies --------------------------------------------------------------------------------
    def policy(self, kind: str) -> TanhGaussianPolicy:
        """The torch policy of `kind` ("mf" or "mb"), e.g. for export."""
        if kind == MF:
            return self.sac.actor
        if kind == MB:
            if self.mb is None:
                raise ValueError(f"algorithm {self.config.algorithm!r} has no MB policy")
            return self.mb.policy
        raise ValueError(f"kind must be 'mf' or 'mb', not {kind!r}")

    def act(self, obs: Any, kind: str, deterministic: bool = False) -> np.ndarray:
        """An action for one observation, in-process (the sim loop of `dclaw train`)."""
        return self.policy(kind).act(obs, deterministic=deterministic)

    # -- persistence (learner/checkpoint.py adds RNG states and the file format) --------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "config": config_to_dict(self.config),
            "buffer": self.buffer.state_dict(),
            "sac": self.sac.state_dict(),
            "versions": dict(self.versions),
            "recent_choices": list(self.recent_choices),
            "recent_mf_returns": list(self.recent_mf_returns),
            "episodes_seen": self.episodes_seen,
            "prior_episodes": self.prior_episodes,
            "generator": self.generator.get_state(),
        }
        if self.model is not None and self.model_trainer is not None and self.mb is not None:
            state["model"] = self.model.state_dict()
            state["model_optim"] = self.model_trainer.optim.state_dict()
            state["mb"] = self.mb.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        if self.turned is not None:  # derived data: rebuilt, not checkpointed
            c = self.config
            self.turned = EpisodeBuffer(c.obs_dim, c.act_dim, c.episode_steps, self.device)
            saved = state["buffer"]
            for obs, actions, rewards, terminated in zip(
                saved["obs"], saved["actions"], saved["rewards"], saved["terminated"], strict=True
            ):
                self._store_turned(obs.numpy(), actions.numpy(), rewards.numpy(), bool(terminated))
        self.sac.load_state_dict(state["sac"])
        self.versions = dict(state["versions"])
        self.recent_choices.clear()
        self.recent_choices.extend(state["recent_choices"])
        self.recent_mf_returns.clear()  # checkpoints from before the posterior check: none
        self.recent_mf_returns.extend(state.get("recent_mf_returns", []))
        self.episodes_seen = int(state["episodes_seen"])
        self.prior_episodes = int(state.get("prior_episodes", 0))  # older checkpoints: none
        self.generator.set_state(state["generator"])
        if self.model is not None and self.model_trainer is not None and self.mb is not None:
            self.model.load_state_dict(state["model"])
            self.model_trainer.optim.load_state_dict(state["model_optim"])
            self.mb.load_state_dict(state["mb"])
