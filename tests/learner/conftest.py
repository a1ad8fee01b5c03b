"""Fixtures for the learner tests: small, CPU-only, single-threaded where that keeps them fast."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    # Two cores are shared with other work; one thread is faster for these tiny networks.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
