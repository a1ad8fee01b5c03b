"""SAC's gradient step with the backward passes written out, into buffers kept between steps.

The same arithmetic as `SAC.update` (Sec. 3.2: layer-normalised twin critics, no entropy term
in the Q target unless asked, a Tanh-Gaussian actor), the same random draws in the same order,
the same optimisers and their state: `tests/test_sac_fused.py` checks the parameters after
several steps against the autograd path to float rounding.

Written by hand because at these sizes (batch 256, layers of 256) on a CPU the matrix products
are about a third of an autograd step; the rest is per-operation dispatch, graph bookkeeping
and fresh 256 KB allocations, and `torch.compile` did not remove it here (docs/BENCHMARKS.md,
"SAC gradient steps per second"). This path issues only the kernels the step needs, each
writing into a buffer allocated once per batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from learner.buffer import TransitionBatch
from learner.networks import LOG_SQRT_2PI, QNetwork

aten = torch.ops.aten


def supports(sac) -> bool:
    """Whether `FusedSACStep` covers this learner's networks (LayerNorm critics; a policy whose
    hidden layers are Linear + Tanh)."""
    critics_ok = all(
        [type(m) for m in q.net] == _critic_layout(len(sac.config.critic_hidden))
        for q in (sac.q1, sac.q2, sac.q1_target, sac.q2_target)
    )
    trunk = list(sac.actor.trunk)
    actor_ok = [type(m) for m in trunk] == [nn.Linear, nn.Tanh] * len(sac.actor.hidden)
    return critics_ok and actor_ok


def _critic_layout(depth: int) -> list[type[nn.Module]]:
    return [nn.Linear, nn.LayerNorm, nn.ReLU] * depth + [nn.Linear]


# -- parameters, as the kernels want them -------------------------------------------------------
@dataclass
class _Critic:
    """One Q network: per hidden layer (W, b, LayerNorm weight, LayerNorm bias, eps); the head."""

    hidden: list[tuple[nn.Linear, nn.LayerNorm]]
    head: nn.Linear

    @classmethod
    def of(cls, q: QNetwork) -> _Critic:
        mods = list(q.net)
        return cls([(mods[i], mods[i + 1]) for i in range(0, len(mods) - 1, 3)], mods[-1])


@dataclass
class _Trace:
    """What a critic's forward pass keeps for its backward pass, per hidden layer."""

    pre_norm: list[torch.Tensor] = field(default_factory=list)  # W h + b
    mean: list[torch.Tensor] = field(default_factory=list)
    rstd: list[torch.Tensor] = field(default_factory=list)
    post: list[torch.Tensor] = field(default_factory=list)  # relu(LayerNorm(.)), the next input


class _Buffers:
    """Every tensor one step writes, allocated once for a batch size (a dict of named slots)."""

    def __init__(self, device: torch.device):
        self.device, self.slots = device, {}

    def get(self, name: str, *shape: int) -> torch.Tensor:
        buf = self.slots.get(name)
        if buf is None or buf.shape != shape:
            buf = self.slots[name] = torch.empty(shape, device=self.device)
        return buf


class FusedSACStep:
    """`SAC.update` without autograd. Built from a `SAC` and bound to its modules and
    optimisers: it writes `.grad` of the same parameters and calls the same optimisers, so
    checkpoints, exports and the autograd path all see one learner."""

    def __init__(self, sac):
        self.sac = sac
        self.critics = [_Critic.of(sac.q1), _Critic.of(sac.q2)]
        self.targets = [_Critic.of(sac.q1_target), _Critic.of(sac.q2_target)]
        actor = sac.actor
        self.trunk = [m for m in actor.trunk if isinstance(m, nn.Linear)]
        self.buf = _Buffers(next(actor.parameters()).device)
        self.obs_dim = actor.obs_dim

    # -- critics ------------------------------------------------------------------------------
    def _critic_forward(self, critic: _Critic, x: torch.Tensor, tag: str) -> tuple[
            torch.Tensor, _Trace]:
        trace, h, batch = _Trace(), x, x.shape[0]
        for i, (linear, norm) in enumerate(critic.hidden):
            width = linear.out_features
            z = torch.addmm(linear.bias, h, linear.weight.t(),
                            out=self.buf.get(f"{tag}.z{i}", batch, width))
            # (this kernel's out= form computes into fresh tensors and copies: not used)
            post, mean, rstd = aten.native_layer_norm(z, [width], norm.weight, norm.bias,
                                                      norm.eps)
            post.clamp_min_(0.0)
            trace.pre_norm.append(z), trace.mean.append(mean), trace.rstd.append(rstd)
            trace.post.append(post)
            h = post
        q = torch.addmm(critic.head.bias, h, critic.head.weight.t(),
                        out=self.buf.get(f"{tag}.q", batch, 1))
        return q, trace

    def _critic_backward(self, critic: _Critic, x: torch.Tensor, trace: _Trace,
                         grad_q: torch.Tensor, tag: str, weights: bool) -> torch.Tensor | None:
        """Back from dL/dq (B, 1). With `weights`, writes the critic's parameter gradients;
        without, returns dL/d(action) only (the actor's step: the critic is held fixed)."""
        batch, head = grad_q.shape[0], critic.head
        if weights:
            torch.mm(grad_q.t(), trace.post[-1], out=head.weight.grad)
            torch.sum(grad_q, 0, out=head.bias.grad)
        grad_h = torch.mm(grad_q, head.weight, out=self.buf.get(f"{tag}.gh", batch,
                                                                head.in_features))
        for i in reversed(range(len(critic.hidden))):
            linear, norm = critic.hidden[i]
            width = linear.out_features
            grad_post = aten.threshold_backward.grad_input(
                grad_h, trace.post[i], 0.0, grad_input=self.buf.get(f"{tag}.gp{i}", batch, width))
            # The LayerNorm's own gradients go to scratch when the critic is held fixed (the
            # out= form of this kernel wants all three outputs).
            grad_z, grad_w, grad_b = aten.native_layer_norm_backward(
                grad_post, trace.pre_norm[i], [width], trace.mean[i], trace.rstd[i],
                norm.weight, norm.bias, [True, weights, weights])
            if weights:
                norm.weight.grad, norm.bias.grad = grad_w, grad_b
                h_in = trace.post[i - 1] if i else x
                torch.mm(grad_z.t(), h_in, out=linear.weight.grad)
                torch.sum(grad_z, 0, out=linear.bias.grad)
            if i:
                grad_h = torch.mm(grad_z, linear.weight,
                                  out=self.buf.get(f"{tag}.gh{i}", batch, linear.in_features))
            elif not weights:  # the action's columns of the first layer's input
                w_act = linear.weight[:, self.obs_dim:]
                return torch.mm(grad_z, w_act, out=self.buf.get(f"{tag}.gact", batch,
                                                                w_act.shape[1]))
        return None

    # -- actor --------------------------------------------------------------------------------
    def _actor_forward(self, obs: torch.Tensor, tag: str) -> dict[str, torch.Tensor]:
        """Features, Gaussian, squashed action and log-density; as `TanhGaussianPolicy.sample`,
        with tanh(z) computed as 2 sigmoid(2z) - 1 (this torch's CPU tanh is 5-15x slower than
        its sigmoid: docs/BENCHMARKS.md, gate latency)."""
        actor, batch, get = self.sac.actor, obs.shape[0], self.buf.get
        h = torch.sub(obs, actor.obs_mean, out=get(f"{tag}.x", batch, actor.obs_dim))
        h.div_(actor.obs_std)
        out = {"x": h}
        for i, linear in enumerate(self.trunk):
            y = torch.addmm(linear.bias, h, linear.weight.t(), beta=2.0, alpha=2.0,
                            out=get(f"{tag}.y{i}", batch, linear.out_features))
            y.sigmoid_().mul_(2.0).sub_(1.0)
            out[f"y{i}"] = h = y
        act = actor.act_dim
        mean = torch.addmm(actor.mean_head.bias, h, actor.mean_head.weight.t(),
                           out=get(f"{tag}.mean", batch, act))
        raw = torch.addmm(actor.std_head.bias, h, actor.std_head.weight.t(),
                          out=get(f"{tag}.raw", batch, act))
        std = get(f"{tag}.std", batch, act)
        if actor.sigma_max is None:
            aten.softplus.out(raw, 1, 20, out=std)
        else:
            torch.sigmoid(raw, out=std).mul_(actor.sigma_max)
        std.add_(actor.min_std)
        noise = get(f"{tag}.noise", batch, act).normal_()  # the draw of `randn_like(mean)`
        pre = torch.addcmul(mean, std, noise, out=get(f"{tag}.pre", batch, act))
        squashed = torch.tanh(pre, out=get(f"{tag}.u", batch, act))
        action = torch.addcmul(actor.action_offset, actor.action_scale, squashed,
                               out=get(f"{tag}.action", batch, act))
        out.update(raw=raw, std=std, noise=noise, pre=pre, u=squashed, action=action)
        return out

    def _log_prob(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """As `_squashed_sample`: the Gaussian density with the tanh and scale corrections."""
        actor = self.sac.actor
        gauss = (-0.5 * f["noise"].square() - f["std"].log()).sum(-1) - LOG_SQRT_2PI * actor.act_dim
        log_det = (2.0 * (math.log(2.0) - f["pre"]
                          - torch.nn.functional.softplus(-2.0 * f["pre"]))).sum(-1)
        return gauss - log_det - actor.action_scale.abs().log().sum()

    def _actor_backward(self, f: dict[str, torch.Tensor], grad_action: torch.Tensor,
                        grad_log_prob: float) -> None:
        """Writes the actor's gradients from dL/d(action) (B, act) and the constant
        dL/d(log pi) of every row."""
        actor, batch, get = self.sac.actor, grad_action.shape[0], self.buf.get
        act = actor.act_dim
        u = f["u"]
        # action = offset + scale u, u = tanh(pre); -log det = -log(1 - u^2) has d/dpre = 2u.
        grad_pre = torch.mul(grad_action, actor.action_scale, out=get("pi.gpre", batch, act))
        aten.tanh_backward.grad_input(grad_pre, u, grad_input=grad_pre)
        grad_pre.add_(u, alpha=2.0 * grad_log_prob)
        # pre = mean + std * noise; log pi has -log std.
        grad_std = torch.mul(grad_pre, f["noise"], out=get("pi.gstd", batch, act))
        grad_std.sub_(torch.reciprocal(f["std"], out=get("pi.rstd", batch, act)),
                      alpha=grad_log_prob)
        grad_raw = get("pi.graw", batch, act)
        if actor.sigma_max is None:
            aten.softplus_backward.grad_input(grad_std, f["raw"], 1, 20, grad_input=grad_raw)
        else:
            sig = torch.sigmoid(f["raw"], out=get("pi.sig", batch, act))
            aten.sigmoid_backward.grad_input(grad_std, sig, grad_input=grad_raw)
            grad_raw.mul_(actor.sigma_max)
        h = f[f"y{len(self.trunk) - 1}"]
        for head, grad in ((actor.mean_head, grad_pre), (actor.std_head, grad_raw)):
            torch.mm(grad.t(), h, out=head.weight.grad)
            torch.sum(grad, 0, out=head.bias.grad)
        grad_h = torch.mm(grad_pre, actor.mean_head.weight,
                          out=get("pi.gh", batch, h.shape[1]))
        grad_h.addmm_(grad_raw, actor.std_head.weight)
        for i in reversed(range(len(self.trunk))):
            linear = self.trunk[i]
            grad_z = aten.tanh_backward.grad_input(
                grad_h, f[f"y{i}"], grad_input=get(f"pi.gz{i}", batch, linear.out_features))
            h_in = f[f"y{i - 1}"] if i else f["x"]
            torch.mm(grad_z.t(), h_in, out=linear.weight.grad)
            torch.sum(grad_z, 0, out=linear.bias.grad)
            if i:
                grad_h = torch.mm(grad_z, linear.weight,
                                  out=get(f"pi.gh{i}", batch, linear.in_features))

    # -- the step -----------------------------------------------------------------------------
    def _ensure_grads(self) -> None:
        """Gradient tensors that persist between steps (the optimisers read `.grad`)."""
        sac = self.sac
        for p in (*sac.actor_params, *sac.q1.parameters(), *sac.q2.parameters()):
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    @torch.no_grad()
    def update(self, batch: TransitionBatch):
        from learner.sac import SACStats, polyak_update, temperature_loss  # (a cycle at import)

        sac, cfg, get = self.sac, self.sac.config, self.buf.get
        self._ensure_grads()
        n = batch.obs.shape[0]
        scale = cfg.reward_scale
        alpha_now = sac.log_alpha.exp()

        # Target (as `SAC.compute_q_target`): min of the target critics at a' ~ pi(s').
        nxt = self._actor_forward(batch.next_obs, "next")
        x_next = torch.cat([batch.next_obs, nxt["action"]], -1, out=get("next.in", n,
                                                                      self.critic_in))
        next_q = torch.minimum(self._critic_forward(self.targets[0], x_next, "t1")[0],
                               self._critic_forward(self.targets[1], x_next, "t2")[0])
        if cfg.entropy_in_q_target:
            next_q = next_q - (scale * alpha_now) * self._log_prob(nxt).unsqueeze(-1)
        target = (batch.rewards * scale).unsqueeze(-1)
        target.addcmul_((1.0 - batch.dones).unsqueeze(-1), next_q, value=sac.gamma)

        # Critic step: MSE of both critics to the target.
        x = torch.cat([batch.obs, batch.actions], -1, out=get("cur.in", n, self.critic_in))
        q1, tr1 = self._critic_forward(self.critics[0], x, "c1")
        q2, tr2 = self._critic_forward(self.critics[1], x, "c2")
        err1, err2 = q1 - target, q2 - target
        critic_loss = err1.square().mean() + err2.square().mean()
        q_mean = q1.mean()
        self._critic_backward(self.critics[0], x, tr1, err1.mul_(2.0 / n), "c1", True)
        self._critic_backward(self.critics[1], x, tr2, err2.mul_(2.0 / n), "c2", True)
        sac.critic_optim.step()

        # Actor step: E[alpha log pi - min Q] through the updated critics, held fixed.
        cur = self._actor_forward(batch.obs, "pi")
        log_prob = self._log_prob(cur)
        x_pi = torch.cat([batch.obs, cur["action"]], -1, out=get("pi.in", n, self.critic_in))
        qa, tra = self._critic_forward(self.critics[0], x_pi, "a1")
        qb, trb = self._critic_forward(self.critics[1], x_pi, "a2")
        first = qa <= qb  # torch.min's gradient goes to the smaller; ties are measure zero
        q_min = torch.where(first, qa, qb)
        alpha = scale * alpha_now
        actor_loss = (alpha * log_prob - q_min.squeeze(-1)).mean()
        grad_qa = first.to(qa.dtype).mul_(-1.0 / n)
        grad_qb = (~first).to(qa.dtype).mul_(-1.0 / n)
        grad_action = self._critic_backward(self.critics[0], x_pi, tra, grad_qa, "a1", False)
        grad_action = grad_action + self._critic_backward(self.critics[1], x_pi, trb, grad_qb,
                                                          "a2", False)
        self._actor_backward(cur, grad_action, float(alpha) / n)
        sac.actor_optim.step()

        alpha_loss = torch.zeros(())
        if sac.alpha_optim is not None:
            with torch.enable_grad():
                alpha_loss = temperature_loss(sac.log_alpha, log_prob, sac.target_entropy)
                sac.alpha_optim.zero_grad(set_to_none=True)
                alpha_loss.backward()
            sac.alpha_optim.step()

        polyak_update(sac.q1.parameters(), sac.q1_target.parameters(), cfg.tau)
        polyak_update(sac.q2.parameters(), sac.q2_target.parameters(), cfg.tau)
        return SACStats(
            critic_loss=critic_loss.item(),
            actor_loss=actor_loss.item(),
            alpha=sac.alpha,
            alpha_loss=alpha_loss.item(),
            q_mean=q_mean.item(),
            entropy=-log_prob.mean().item(),
        )

    @property
    def critic_in(self) -> int:
        return self.critics[0].hidden[0][0].in_features
