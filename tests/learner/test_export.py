"""The wire format: the numpy runner matches the torch policy (DESIGN "Wire format of a policy")."""

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from learner.export import export_policy
from learner.networks import TanhGaussianPolicy
from robot.policy import NumpyPolicy, PolicyIntegrityError

OBS, ACT = 21, 9


def make_policy(hidden, sigma_max=None, scaled=False) -> TanhGaussianPolicy:
    kwargs = {"action_scale": np.linspace(0.5, 2.0, ACT), "action_offset": 0.1} if scaled else {}
    policy = TanhGaussianPolicy(OBS, ACT, hidden, sigma_max=sigma_max, **kwargs)
    if scaled:
        with torch.no_grad():
            policy.obs_mean.uniform_(-1, 1)
            policy.obs_std.uniform_(0.5, 2)
    return policy


CASES = [((64, 64, 64), None, False), ((256, 256, 256), 0.5, True), ((1024, 1024, 1024), None,
                                                                       True)]


@pytest.mark.parametrize(("hidden", "sigma_max", "scaled"), CASES)
def test_deterministic_action_matches_torch_to_1e5(hidden, sigma_max, scaled):
    policy = make_policy(hidden, sigma_max, scaled)
    doc = export_policy(policy, "mb", version=3)
    runner = NumpyPolicy.from_bytes(doc.data, expected_sha256=doc.sha256)
    obs = np.random.default_rng(0).normal(0, 2, (256, OBS)).astype(np.float32)
    with torch.no_grad():
        expected = policy(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(runner.act(obs, deterministic=True), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(runner.act(obs[0], deterministic=True), expected[0], atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize(("hidden", "sigma_max", "scaled"), CASES[:2])
def test_stochastic_action_is_the_same_function_of_the_same_noise(hidden, sigma_max, scaled):
    policy = make_policy(hidden, sigma_max, scaled)
    doc = export_policy(policy, "mf", version=1)
    runner = NumpyPolicy.from_bytes(doc.data)
    obs = np.random.default_rng(1).normal(size=(64, OBS)).astype(np.float32)
    sampled = runner.act(obs, rng=np.random.default_rng(5))
    noise = np.random.default_rng(5).standard_normal((64, ACT))
    with torch.no_grad():
        expected, _ = policy.sample(torch.from_numpy(obs), noise=torch.from_numpy(noise).float())
    np.testing.assert_allclose(sampled, expected.numpy(), atol=1e-5, rtol=0)


def test_stochastic_samples_follow_the_torch_distribution():
    policy = make_policy((64, 64, 64))
    with torch.no_grad():
        policy.std_head.bias.fill_(0.0)  # std around softplus(0) ~ 0.7: a wide, skewed tanh law
    runner = NumpyPolicy.from_bytes(export_policy(policy, "mf", 0).data)
    obs = np.random.default_rng(2).normal(size=OBS).astype(np.float32)
    n = 20000
    ours = runner.act(np.tile(obs, (n, 1)), rng=np.random.default_rng(3))
    with torch.no_grad():
        theirs, _ = policy.sample(torch.from_numpy(np.tile(obs, (n, 1))))
    theirs = theirs.numpy()
    for q in (0.1, 0.5, 0.9):
        np.testing.assert_allclose(np.quantile(ours, q, 0), np.quantile(theirs, q, 0), atol=0.03)
    np.testing.assert_allclose(ours.std(0), theirs.std(0), atol=0.02)


def test_document_carries_its_header_and_is_deterministic():
    policy = make_policy((64, 64, 64), sigma_max=0.3)
    first, second = export_policy(policy, "mb", 12), export_policy(policy, "mb", 12)
    assert first.data == second.data and first.sha256 == second.sha256
    runner = NumpyPolicy.from_bytes(first.data)
    header = runner.header
    assert (header["kind"], header["version"], runner.kind, runner.version) == ("mb", 12, "mb", 12)
    arch = header["architecture"]
    assert arch["hidden"] == [64, 64, 64] and arch["activation"] == "tanh"
    assert (arch["std"], arch["sigma_max"]) == ("sigmoid", 0.3)
    assert {"action_scale", "action_offset", "obs_mean", "obs_std"} <= set(header["arrays"])
    with np.load(io.BytesIO(first.data), allow_pickle=False) as npz:
        assert json.loads(str(npz["header"])) == header
        assert npz["hidden.0.weight"].dtype == np.float32


def test_wrong_expected_sha256_is_refused():
    doc = export_policy(make_policy((8,)), "mf", 0)
    with pytest.raises(PolicyIntegrityError):
        NumpyPolicy.from_bytes(doc.data, expected_sha256="0" * 64)


def test_tampered_weights_are_refused_even_without_an_expected_sha256():
    doc = export_policy(make_policy((8,)), "mf", 0)
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(doc.data)) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename == "mean.bias.npy":
                array = np.load(io.BytesIO(payload))
                out = io.BytesIO()
                np.save(out, array + 1)
                payload = out.getvalue()
            dst.writestr(item, payload)
    with pytest.raises(PolicyIntegrityError, match="payload"):
        NumpyPolicy.from_bytes(tampered.getvalue())


def test_garbage_is_refused():
    with pytest.raises(PolicyIntegrityError):
        NumpyPolicy.from_bytes(b"not a policy")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        export_policy(make_policy((8,)), "ppo", 0)


def test_runner_loads_and_acts_without_torch(tmp_path):
    doc = export_policy(make_policy((32, 32)), "mf", 4)
    path = tmp_path / "policy.npz"
    path.write_bytes(doc.data)
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any torch import now fails\n"
        "import numpy as np\n"
        "from robot.policy import NumpyPolicy\n"
        f"p = NumpyPolicy.from_bytes(open({str(path)!r}, 'rb').read(), {doc.sha256!r})\n"
        f"print(p.act(np.zeros({OBS}), deterministic=True).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"({ACT},)"
