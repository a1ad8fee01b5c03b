"""The episode buffer: typed batches whose contents match what was stored."""

import numpy as np
import pytest
import torch

from learner.buffer import EpisodeBuffer, TrajectoryBatch, TransitionBatch

T, OBS, ACT = 5, 3, 2


def tagged_episode(ep: int):
    """obs[t] = (ep, t, 0), actions[t] = (ep, t), rewards[t] = 100 ep + t: every value says
    where it came from."""
    obs = np.zeros((T + 1, OBS), np.float32)
    obs[:, 0], obs[:, 1] = ep, np.arange(T + 1)
    actions = np.stack([np.full(T, ep), np.arange(T)], 1).astype(np.float32)
    rewards = (100 * ep + np.arange(T)).astype(np.float32)
    return obs, actions, rewards


def filled(n: int, terminated=()) -> EpisodeBuffer:
    buffer = EpisodeBuffer(OBS, ACT, T, initial_capacity=2)
    for ep in range(n):
        buffer.add_episode(*tagged_episode(ep), terminated=ep in terminated)
    return buffer


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_transitions_have_the_right_shapes_and_consistent_contents(batch_size):
    batch = filled(4).sample_transitions(batch_size, torch.Generator().manual_seed(0))
    assert isinstance(batch, TransitionBatch)
    assert batch.obs.shape == batch.next_obs.shape == (batch_size, OBS)
    assert batch.actions.shape == (batch_size, ACT)
    assert batch.rewards.shape == batch.dones.shape == (batch_size,)
    ep, t = batch.obs[:, 0], batch.obs[:, 1]
    torch.testing.assert_close(batch.next_obs[:, 1], t + 1)  # the step that followed
    torch.testing.assert_close(batch.next_obs[:, 0], ep)  # in the same episode
    torch.testing.assert_close(batch.actions, torch.stack([ep, t], 1))
    torch.testing.assert_close(batch.rewards, 100 * ep + t)


def test_time_limit_is_not_termination():
    batch = filled(3).sample_transitions(500, torch.Generator().manual_seed(1))
    assert (batch.obs[:, 1] == T - 1).any()  # last steps were sampled ...
    assert torch.all(batch.dones == 0)  # ... and still bootstrap


def test_a_real_termination_marks_only_the_last_step_of_that_episode():
    batch = filled(3, terminated={1}).sample_transitions(600, torch.Generator().manual_seed(2))
    expected = (batch.obs[:, 0] == 1) & (batch.obs[:, 1] == T - 1)
    assert expected.any()
    torch.testing.assert_close(batch.dones, expected.float())


@pytest.mark.parametrize("batch_size", [1, 10])
def test_trajectories_are_whole_episodes(batch_size):
    batch = filled(4).sample_trajectories(batch_size, torch.Generator().manual_seed(0))
    assert isinstance(batch, TrajectoryBatch)
    assert batch.obs.shape == (batch_size, T + 1, OBS)
    assert batch.actions.shape == (batch_size, T, ACT)
    assert batch.rewards.shape == (batch_size, T)
    ep = batch.obs[:, 0, 0]
    assert torch.all(batch.obs[:, :, 0] == ep[:, None])
    torch.testing.assert_close(batch.obs[:, :, 1], torch.arange(T + 1.0).expand(batch_size, -1))
    torch.testing.assert_close(batch.rewards, 100 * ep[:, None] + torch.arange(T))


def test_initial_observations_are_the_first_of_every_episode():
    init = filled(5).initial_observations()
    assert init.shape == (5, OBS)
    torch.testing.assert_close(init[:, 0], torch.arange(5.0))
    assert torch.all(init[:, 1] == 0)


def test_storage_grows_geometrically_not_per_episode():
    buffer = EpisodeBuffer(OBS, ACT, T, initial_capacity=2)
    reallocations, pointer = 0, buffer._obs.data_ptr()
    for ep in range(100):
        buffer.add_episode(*tagged_episode(ep))
        if buffer._obs.data_ptr() != pointer:
            reallocations, pointer = reallocations + 1, buffer._obs.data_ptr()
    assert len(buffer) == 100 and buffer.num_transitions == 100 * T
    assert reallocations == 6  # 2 -> 4 -> ... -> 128
    assert buffer.capacity == 128
    torch.testing.assert_close(buffer.initial_observations()[:, 0], torch.arange(100.0))


@pytest.mark.parametrize("which", ["obs", "actions", "rewards"])
def test_wrong_shapes_are_refused(which):
    parts = dict(zip(["obs", "actions", "rewards"], tagged_episode(0), strict=True))
    parts[which] = parts[which][:-1]
    with pytest.raises(ValueError, match=which):
        EpisodeBuffer(OBS, ACT, T).add_episode(**parts)


def test_state_dict_round_trip():
    source = filled(5, terminated={3})
    copy = EpisodeBuffer(OBS, ACT, T)
    copy.load_state_dict(source.state_dict())
    assert len(copy) == 5
    for a, b in zip(source.all_trajectories(), copy.all_trajectories(), strict=True):
        torch.testing.assert_close(a, b)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(
        source.sample_transitions(50, gen()).dones, copy.sample_transitions(50, gen()).dones
    )


def test_sampling_an_empty_buffer_fails_clearly():
    with pytest.raises(RuntimeError, match="empty"):
        EpisodeBuffer(OBS, ACT, T).sample_transitions(4)
