"""A run's learner config: a preset plus overrides, checked before anything is stored."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from dclaw.task import ACTION_DIM, OBS_DIM
from learner.config import AgentConfig, config_from_dict, config_to_dict, make_config
from server.errors import InvalidInput

# Fixed by the task or chosen by the trainer's machine, never by a run.
FORBIDDEN_OVERRIDES = {"algorithm", "obs_dim", "act_dim", "device"}
_ADAPTER = TypeAdapter(AgentConfig)
_MAY_BE_NEGATIVE = {"seed", "target_entropy"}


def resolve_config(*, preset: str, algorithm: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The run's full config as a JSON-friendly dict, or InvalidInput saying what is wrong."""
    bad = sorted(FORBIDDEN_OVERRIDES & set(overrides))
    if bad:
        raise InvalidInput(f"overrides may not set {bad}: the run and the task fix them")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        config = make_config(preset, algorithm=algorithm, **values)
        checked = _ADAPTER.validate_python(config_to_dict(config))
    except ValidationError as exc:
        raise InvalidInput(f"bad overrides: {_pydantic_message(exc)}") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidInput(f"bad overrides: {exc}") from exc
    problems = list(_negative_numbers(config_to_dict(checked)))
    if checked.obs_dim != OBS_DIM or checked.act_dim != ACTION_DIM:
        problems.append("obs_dim/act_dim differ from the task")
    if checked.episode_steps < 1:
        problems.append("episode_steps must be at least 1")
    if problems:
        raise InvalidInput("bad overrides: " + "; ".join(problems))
    return config_to_dict(checked)


def config_for_trainer(config: dict[str, Any], device: str) -> AgentConfig:
    """The stored config with the trainer's device."""
    return config_from_dict({**config, "device": device})


def _negative_numbers(data: dict[str, Any], prefix: str = ""):
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _negative_numbers(value, f"{name}__")
        elif isinstance(value, bool) or key in _MAY_BE_NEGATIVE:
            continue
        elif isinstance(value, int | float) and value < 0:
            yield f"{name} must not be negative"
        elif isinstance(value, list | tuple) and any(
            isinstance(v, int | float) and v <= 0 for v in value
        ):
            yield f"{name} must hold positive sizes"


def _pydantic_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'__'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
