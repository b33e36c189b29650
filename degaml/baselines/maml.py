"""MAML-en-LLM (Sinha et al., KDD 2024, arXiv 2405.11446) over the LoRA parameters.

What we followed from the paper:
- bi-level optimization: per task, an inner loop of `inner_steps` updates on *support* batches gives
  adapted parameters theta_i; the outer (meta) update moves the shared initialization theta with the
  average over the step's tasks of the gradient of the *query* loss at theta_i (their Fig. 2);
- second-order meta-gradients (differentiating through the inner updates), here with torch.autograd
  on a `torch.func.functional_call` of the PEFT model, and first-order as the cheap option;
- Adam in both loops with its moments shared between inner and outer updates (their stabilizer).

Where we had to choose (the paper adapts full models for in-context learning; no code is public):
- only the LoRA parameters are meta-learned (the base model is frozen), so the init is a LoRA;
- moment sharing: each task's inner loop starts from the shared (m, v) and updates a copy; after the
  step the shared moments take the mean of the tasks' inner moments, then the outer Adam step updates
  them again with the meta-gradient. In second-order mode Adam's denominator is a constant to
  differentiation; the first moment carries the gradient each inner step adds;
- test time: the meta-learned init is adapted on the target's support examples with the inner rule
  (inner_lr, shared moments included) for the setup's `steps`, the budget every method gets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from ..models import lora_state, peft_model
from ..sft import sample_batch
from .common import BaselineJob, lora_parameters, write_result
from .settings import MamlConfig

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]


NAME = "maml"
META_TRAINS = True
OUTPUT = "plain"
NEEDS_LIBRARY = False




class SharedMoments:
    """Adam's first and second moments and step count, shared by the inner and the outer loop."""

    def __init__(self, params: Params, betas: tuple[float, float], eps: float) -> None:
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.t = 0
        self.betas, self.eps = betas, eps

    def copy(self) -> SharedMoments:
        other = SharedMoments({}, self.betas, self.eps)
        other.m, other.v, other.t = dict(self.m), dict(self.v), self.t
        return other

    def direction(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        """Update the moments with `grad` (which may carry a graph) and return Adam's bias-corrected step.
        Call `advance()` once per step, before the first `direction` of that step."""
        b1, b2 = self.betas
        self.m[name] = b1 * self.m[name].detach() + (1 - b1) * grad
        self.v[name] = b2 * self.v[name].detach() + (1 - b2) * grad * grad
        m_hat = self.m[name] / (1 - b1 ** self.t)
        v_hat = self.v[name].detach() / (1 - b2 ** self.t)
        # The preconditioner is a constant to differentiation. A coordinate that never had a gradient
        # (LoRA A while B is still zero) has no scale yet: its step is 0 either way, and giving it zero
        # sensitivity instead of 1/eps keeps second-order meta-gradients finite.
        scale = torch.where(v_hat > 0, 1 / (v_hat.sqrt() + self.eps), torch.zeros_like(v_hat))
        return m_hat * scale

    def advance(self) -> None:
        self.t += 1

    def detached(self) -> SharedMoments:
        other = self.copy()
        other.m = {k: v.detach() for k, v in self.m.items()}
        other.v = {k: v.detach() for k, v in self.v.items()}
        return other


def inner_adapt(loss_fn: LossFn, params: Params, batches: Sequence[Any], lr: float,
                moments: SharedMoments | None, create_graph: bool) -> Params:
    """`len(batches)` inner updates from `params`. With `create_graph` the result stays differentiable
    with respect to `params` (second order); otherwise only through the identity (first order)."""
    fast = dict(params)
    for batch in batches:
        loss = loss_fn(fast, batch)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        if moments is not None:
            moments.advance()
        for (name, value), grad in zip(list(fast.items()), grads):
            step = moments.direction(name, grad) if moments is not None else grad
            fast[name] = value - lr * step
    return fast


def meta_gradient(loss_fn: LossFn, params: Params, support: Sequence[Any], query: Any, lr: float, order: int,
                  moments: SharedMoments | None = None) -> tuple[Params, float, SharedMoments | None]:
    """d query_loss(adapted(params)) / d params; first order treats d adapted / d params as the identity."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    own = moments.copy() if moments is not None else None
    # Fused attention kernels have no double backward: second order runs attention in plain math.
    kernels = sdpa_kernel(SDPBackend.MATH) if order == 2 else nullcontext()
    with kernels:
        fast = inner_adapt(loss_fn, leaves, support, lr, own, create_graph=order == 2)
        query_loss = loss_fn(fast, query)
        grads = torch.autograd.grad(query_loss, list(leaves.values()))
    return dict(zip(leaves, grads)), query_loss.item(), own.detached() if own is not None else None


def model_loss(model: torch.nn.Module) -> LossFn:
    def loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, params, args=(), kwargs=batch, strict=False).loss

    return loss


def mean_moments(parts: Sequence[SharedMoments], into: SharedMoments) -> None:
    into.m = {k: torch.stack([p.m[k] for p in parts]).mean(0) for k in into.m}
    into.v = {k: torch.stack([p.v[k] for p in parts]).mean(0) for k in into.v}
    into.t = max(p.t for p in parts)


def meta_train(job: BaselineJob, config: MamlConfig, progress: bool = True) -> dict[str, torch.Tensor]:
    """The meta-learned LoRA init (parameter names of the live PEFT model) and the shared moments, packed."""
    s = job.setup
    torch.manual_seed(s.seed)
    tasks = list(job.meta)
    sampler = torch.Generator().manual_seed(s.seed)
    with peft_model(job.lm, s.lora) as model:
        model.train()
        params = {k: v.detach().clone() for k, v in lora_parameters(model).items()}
        loss_fn = model_loss(model)
        moments = SharedMoments(params, config.betas, config.eps) if config.inner_optimizer == "adam" else None
        outer = SharedMoments(params, config.betas, config.eps)
        history = []
        for step in tqdm(range(config.meta_steps), desc="maml", disable=not progress, leave=False):
            picked = torch.randperm(len(tasks), generator=sampler)[:config.tasks_per_step].tolist()
            grads, losses, inner_moments = [], [], []
            for t in picked:
                examples = job.meta[tasks[t]]
                support = [sample_batch(job.lm, examples, s.batch_size // 2 or 1, sampler) for _ in range(config.inner_steps)]
                query = sample_batch(job.lm, examples, s.batch_size // 2 or 1, sampler)
                g, q, m = meta_gradient(loss_fn, params, support, query, config.inner_lr, config.order, moments)
                if not torch.isfinite(torch.tensor(q)):
                    raise FloatingPointError(f"non-finite query loss at meta-step {step + 1} (task {tasks[t]})")
                grads.append(g)
                losses.append(q)
                inner_moments.append(m)
            meta_grad = {k: torch.stack([g[k] for g in grads]).mean(0) for k in params}
            if moments is not None:
                mean_moments(inner_moments, moments)
            shared = moments if moments is not None else outer
            shared.advance()
            params = {k: (v - config.outer_lr * shared.direction(k, meta_grad[k])).detach() for k, v in params.items()}
            history.append(sum(losses) / len(losses))
    job.log["meta_query_losses"] = history
    return pack(params, moments)


def pack(params: Params, moments: SharedMoments | None) -> dict[str, torch.Tensor]:
    """Meta-training's result as flat tensors (cacheable): the init and the shared moments."""
    packed = {f"init.{k}": v for k, v in params.items()}
    if moments is not None:
        packed |= {f"m.{k}": v for k, v in moments.m.items()} | {f"v.{k}": v for k, v in moments.v.items()}
        packed["t"] = torch.tensor(moments.t)
    return packed


def unpack(packed: dict[str, torch.Tensor], config: MamlConfig) -> tuple[Params, SharedMoments | None]:
    params = {k[len("init."):]: v for k, v in packed.items() if k.startswith("init.")}
    if "t" not in packed:
        return params, None
    moments = SharedMoments(params, config.betas, config.eps)
    moments.m = {k: packed[f"m.{k}"] for k in params}
    moments.v = {k: packed[f"v.{k}"] for k in params}
    moments.t = int(packed["t"])
    return params, moments


def finish(job: BaselineJob, config: MamlConfig, meta: dict[str, torch.Tensor], out: Path, started: float
           ) -> dict[str, Any]:
    """Adapt the meta-learned init on the target's support examples with the inner rule."""
    s = job.setup
    params, moments = unpack(meta, config)
    sampler = torch.Generator().manual_seed(s.seed + 1)
    with peft_model(job.lm, s.lora) as model:
        loss_fn = model_loss(model)
        batches = [sample_batch(job.lm, job.support, s.batch_size, sampler) for _ in range(s.steps)]
        leaves = {k: v.to(job.lm.device).requires_grad_(True) for k, v in params.items()}
        adapted = inner_adapt(loss_fn, leaves, batches, config.inner_lr, moments.copy() if moments else None,
                              create_graph=False)
        with torch.no_grad():
            for name, p in lora_parameters(model).items():
                p.copy_(adapted[name].detach())
        state = lora_state(model)
    return write_result(job, "maml", config, state, out, started,
                        {"target_steps": s.steps, "test_time_lr": config.inner_lr})


CONFIG = MamlConfig
