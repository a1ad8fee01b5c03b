"""The EPS gate: which policy runs the next episode (Sec. 3.2 "Lower Bound Estimation", A.2.4).

With f = log, the estimate L-hat of eq. (3) is finite only if J(MB|w_i) - J(MF|w_i) > 0 for every
sampled mask w_i, so the gate runs the model-based policy only when every one of K masks
favours it, each J estimated from M model rollouts of length T with that mask held fixed.
Otherwise the model-free policy is in the EPS and runs. At least one episode in every ten runs
the model-free policy (A.2.5).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from learner.config import GateConfig
from learner.dynamics import DynamicsModel
from learner.imagination import Policy, imagine

log = logging.getLogger(__name__)

MF, MB = "mf", "mb"
REASONS = ("eps", "forced-mf", "model-check", "warm-up", "ablation")


@dataclass
class GateRecord:
    """One decision, as stored and shown: the choice, why, and the evidence."""

    choice: str  # "mf" | "mb"
    reason: str  # "eps" | "forced-mf" | "model-check" | "warm-up" | "ablation"
    num_masks: int = 0  # K
    rollouts_per_mask: int = 0  # M
    horizon: int = 0  # T
    j_mb: list[float] = field(default_factory=list)  # J-hat(MB | w_i), i = 1..K
    j_mf: list[float] = field(default_factory=list)  # J-hat(MF | w_i)
    eps_choice: str | None = None  # what the EPS test alone said (differs when forced)
    compute_seconds: float = 0.0
    compute_dtype: str = "float32"  # what the matrix products ran in (GateConfig.compute_dtype)
    mb_version: int = 0
    mf_version: int = 0

    def __post_init__(self) -> None:
        if self.choice not in (MF, MB) or self.reason not in REASONS:
            raise ValueError(f"bad gate record: choice {self.choice!r}, reason {self.reason!r}")

    @property
    def pairs(self) -> list[tuple[float, float]]:
        return list(zip(self.j_mb, self.j_mf, strict=True))

    def to_dict(self) -> dict:
        return asdict(self)


def mb_dominates(j_mb: torch.Tensor, j_mf: torch.Tensor) -> bool:
    """True when J-hat(MB|w_i) - J-hat(MF|w_i) > 0 for ALL i: then MF is provably
    suboptimal (outside the EPS) and MB runs."""
    return bool((j_mb - j_mf > 0).all())


def must_force_mf(recent_choices: Sequence[str], mf_every: int) -> bool:
    """A.2.5: if the last `mf_every - 1` episodes all ran MB, the next one runs MF."""
    window = mf_every - 1
    return len(recent_choices) >= window and all(c == MB for c in recent_choices[-window:])


def posterior_misses_mf(j_mf: torch.Tensor | Sequence[float],
                        recent_mf_returns: Sequence[float], episodes: int) -> bool:
    """True when the mean real return of the last `episodes` MF episodes lies above every
    mask's J-hat(MF | w_i): the model's posterior does not cover the MF policy's real return,
    so it cannot prove MF suboptimal (GateConfig.posterior_check; not in the paper). Also
    `dclaw report`'s count of how often that held."""
    if len(recent_mf_returns) < episodes:
        return False
    real = sum(recent_mf_returns[-episodes:]) / episodes
    return bool(real > float(torch.as_tensor(j_mf).max()))


def estimate_returns(
    model: DynamicsModel,
    mb_policy: Policy,
    mf_policy: Policy,
    initial_obs: torch.Tensor,
    config: GateConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J-hat(MB|w_i), J-hat(MF|w_i)) for K freshly sampled masks, each shape (K,).

    All K * M rollouts of a policy go through the model as one batch; both policies start from
    the same initial states (drawn from the empirical initial-state distribution) under the
    same masks, so their difference is not blurred by different draws.
    """
    K, M, T = config.num_masks, config.rollouts_per_mask, config.horizon
    if T is None:
        raise ValueError("GateConfig.horizon is unset (the agent sets it to the episode length)")
    device = initial_obs.device
    # no_grad, not inference_mode: under inference_mode autocast casts every weight matrix to
    # bfloat16 again at every step (its cast cache is off there), 3.6 ms against 2.7 ms for a
    # 500x1024x1024 product here.
    compute_dtype = resolve_compute_dtype(config.compute_dtype, device)
    with torch.no_grad(), _autocast(compute_dtype, device):
        masks = model.sample_masks(K, generator).repeat_interleave(M)
        rows = torch.randint(initial_obs.shape[0], (K * M,), generator=generator)
        init = initial_obs[rows.to(device)]
        fast_model = _folded(model, compute_dtype)
        mb, mf = (_folded(policy, compute_dtype) for policy in (mb_policy, mf_policy))
        j_mb = imagine(fast_model, mb, init, masks, T).returns.view(K, M).mean(1)
        j_mf = imagine(fast_model, mf, init, masks, T).returns.view(K, M).mean(1)
    return j_mb.float(), j_mf.float()


def decide(
    model: DynamicsModel,
    mb_policy: Policy,
    mf_policy: Policy,
    initial_obs: torch.Tensor,
    config: GateConfig,
    recent_choices: Sequence[str] = (),
    versions: tuple[int, int] = (0, 0),
    generator: torch.Generator | None = None,
    recent_mf_returns: Sequence[float] = (),
) -> GateRecord:
    """Runs the EPS test and the one-in-ten rule. `recent_choices` are the choices of the
    latest episodes, oldest first; `versions` are (MB, MF) policy versions, for the record;
    `recent_mf_returns` the real returns of the latest MF episodes, oldest first (used only
    with `config.posterior_check`)."""
    start = time.perf_counter()
    j_mb, j_mf = estimate_returns(model, mb_policy, mf_policy, initial_obs, config, generator)
    eps_choice = MB if mb_dominates(j_mb, j_mf) else MF
    choice, reason = eps_choice, "eps"
    if eps_choice == MB and must_force_mf(recent_choices, config.mf_every):
        choice, reason = MF, "forced-mf"
    elif eps_choice == MB and config.posterior_check and posterior_misses_mf(
            j_mf, recent_mf_returns, config.posterior_check_episodes):
        choice, reason = MF, "model-check"
    record = GateRecord(
        choice=choice,
        reason=reason,
        num_masks=config.num_masks,
        rollouts_per_mask=config.rollouts_per_mask,
        horizon=config.horizon or 0,
        j_mb=j_mb.tolist(),
        j_mf=j_mf.tolist(),
        eps_choice=eps_choice,
        compute_seconds=time.perf_counter() - start,
        compute_dtype=resolve_compute_dtype(config.compute_dtype, initial_obs.device),
        mb_version=versions[0],
        mf_version=versions[1],
    )
    log.debug("gate: %s (%s), min margin %.3f, %.3f s", choice, reason,
              float((j_mb - j_mf).min()), record.compute_seconds)
    return record


def _folded(net, compute_dtype: str):
    """A policy or the model in its folded form, weights in the compute dtype: the same function
    with fewer, cheaper operations (`SigmoidFoldedPolicy`: the MB policy alone in 0.83x the time
    in float32 here; `FoldedDynamics`: the model in ~0.6x in bfloat16); one without that form as
    it is."""
    fold = getattr(net, "folded", None)
    return net if fold is None else fold(getattr(torch, compute_dtype))


def resolve_compute_dtype(compute_dtype: str, device: torch.device) -> str:
    """"auto" is bfloat16 on a CPU with native bfloat16 matrix instructions (AVX512-BF16 or
    AMX), float32 elsewhere (GPUs, and CPUs where bfloat16 would be emulated: slower).

    Why: at the paper's sizes one decision is ~83 GFLOP of matrix products, and float32 peaks
    near 170 GFLOP/s on the 2-core CPU of docs/BENCHMARKS.md (0.5 s before anything else);
    bfloat16 halves the gate's time there, and its decisions agree with float32's as closely as
    two float32 runs agree with each other (`benchmarks.gate_precision`)."""
    if compute_dtype != "auto":
        return compute_dtype
    if device.type == "cpu" and _native_cpu_bfloat16():
        return "bfloat16"
    return "float32"


def _native_cpu_bfloat16() -> bool:
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and check() for check in checks)


def _autocast(compute_dtype: str, device: torch.device):
    if compute_dtype == "float32":
        return contextlib.nullcontext()
    if compute_dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown gate compute_dtype {compute_dtype!r}")
