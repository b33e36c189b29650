"""ABMLL: amortized Bayesian meta-learning for LoRA (Zhang, Snell & Griffiths 2025, arXiv 2508.14285).

What we followed from the paper (itself built on ABML, Ravi & Beatson 2019):
- global parameters theta = (mu_theta, sigma_theta) define the prior p(phi_i | theta) = N(mu_theta,
  sigma_theta^2) over a task's LoRA parameters phi_i;
- amortized inference: the task posterior q_i = N(mu_i, sigma_i^2) is *computed*, not stored: it starts at
  theta and takes `inner_steps` gradient steps on the task's support examples, so its cost does not grow
  with the number of tasks;
- the objective per task is an ELBO, E_q[-log p(D_i | phi)] + beta * KL(q_i || p(. | theta)), where beta is
  the paper's new hyper-parameter balancing reconstruction against the fidelity of task parameters to the
  global ones (the KL of millions of parameters otherwise swamps a per-token likelihood);
- predictions average the answer probabilities of adapters sampled from the posterior.

Where we had to choose:
- the Gaussians are over the LoRA factors A and B themselves (one mean and one log-std per entry), so
  every sample is an ordinary LoRA that PEFT, vLLM or lm-eval can load. The paper places them on the
  products BA with four LoRA pairs, which makes a sample a dense weight delta that no LoRA loader takes;
- the KL is averaged per parameter (not summed) before beta weighs it, and the reconstruction is the mean
  token NLL, so beta is comparable across model sizes;
- meta-gradients are first order (the efficiency the paper claims over MAML-en-LLM): the query NLL's
  gradient at the task posterior is passed to theta, and the outer KL(stop_grad(q_i) || p(theta)) pulls
  the prior toward the task posteriors;
- the inner loop uses Adam on (mu, log sigma), fresh per task; test time runs it on the target's
  support examples for the setup's `steps`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..memory import peak_memory_mb
from ..models import peft_model, write_ensemble
from ..sft import sample_batch
from .common import BaselineJob, lora_parameters
from .maml import model_loss
from .settings import AbmllConfig

POSTERIOR_FILE = "posterior.safetensors"
Gaussian = dict[str, torch.Tensor]
"""{"mu.<name>": ..., "log_sigma.<name>": ...} over the LoRA parameters."""


NAME = "abmll"
META_TRAINS = True
OUTPUT = "plain"
NEEDS_LIBRARY = False




def gaussian_kl(q_mu: torch.Tensor, q_log_sigma: torch.Tensor, p_mu: torch.Tensor, p_log_sigma: torch.Tensor
                ) -> torch.Tensor:
    """Sum over entries of KL(N(q_mu, q_sigma^2) || N(p_mu, p_sigma^2))."""
    ratio = torch.exp(2 * (q_log_sigma - p_log_sigma))
    return (p_log_sigma - q_log_sigma + 0.5 * (ratio + (q_mu - p_mu) ** 2 * torch.exp(-2 * p_log_sigma)) - 0.5).sum()


def mean_kl(q: Gaussian, p: Gaussian, names: list[str]) -> torch.Tensor:
    total = sum(gaussian_kl(q[f"mu.{n}"], q[f"log_sigma.{n}"], p[f"mu.{n}"], p[f"log_sigma.{n}"]) for n in names)
    return total / sum(q[f"mu.{n}"].numel() for n in names)


def sample(g: Gaussian, names: list[str], rng: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Reparameterized: mu + sigma * eps, differentiable in mu and log sigma."""
    out = {}
    for n in names:
        mu = g[f"mu.{n}"]
        eps = torch.randn(mu.shape, generator=rng, dtype=mu.dtype).to(mu.device)
        out[n] = mu + torch.exp(g[f"log_sigma.{n}"]) * eps
    return out


def negative_elbo(loss_fn: Any, q: Gaussian, prior: Gaussian, names: list[str], batch: Any, beta: float,
                  samples: int) -> torch.Tensor:
    reconstruction = sum(loss_fn(sample(q, names), batch) for _ in range(samples)) / samples
    return reconstruction + beta * mean_kl(q, prior, names)


def infer_posterior(loss_fn: Any, prior: Gaussian, names: list[str], batches: list[Any], config: AbmllConfig
                    ) -> Gaussian:
    """Amortized inference: start at the prior, take one Adam step per support batch on the negative ELBO."""
    q = {k: v.detach().clone().requires_grad_(True) for k, v in prior.items()}
    optimizer = torch.optim.Adam(q.values(), lr=config.inner_lr)
    fixed_prior = {k: v.detach() for k, v in prior.items()}
    for batch in batches:
        loss = negative_elbo(loss_fn, q, fixed_prior, names, batch, config.beta, config.samples)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite ELBO in the inner loop")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in q.items()}


def initial_prior(params: dict[str, torch.Tensor], init_sigma: float) -> Gaussian:
    prior = {}
    for n, v in params.items():
        prior[f"mu.{n}"] = v.detach().clone()
        prior[f"log_sigma.{n}"] = torch.full_like(v, math.log(init_sigma))
    return prior


def meta_train(job: BaselineJob, config: AbmllConfig, progress: bool = True) -> Gaussian:
    """The meta-learned prior (mu and log sigma of every LoRA entry)."""
    s = job.setup
    torch.manual_seed(s.seed)
    tasks = list(job.meta)
    sampler = torch.Generator().manual_seed(s.seed)
    with peft_model(job.lm, s.lora) as model:
        model.train()
        names = list(lora_parameters(model))
        prior = {k: v.requires_grad_(True) for k, v in initial_prior(lora_parameters(model), config.init_sigma).items()}
        loss_fn = model_loss(model)
        optimizer = torch.optim.Adam(prior.values(), lr=config.outer_lr)
        history = []
        half = max(s.batch_size // 2, 1)
        for step in tqdm(range(config.meta_steps), desc="abmll", disable=not progress, leave=False):
            picked = torch.randperm(len(tasks), generator=sampler)[:config.tasks_per_step].tolist()
            optimizer.zero_grad()
            total = 0.0
            for t in picked:
                examples = job.meta[tasks[t]]
                support = [sample_batch(job.lm, examples, half, sampler) for _ in range(config.inner_steps)]
                query = sample_batch(job.lm, examples, half, sampler)
                posterior = infer_posterior(loss_fn, prior, names, support, config)
                # First order: the posterior moves with the prior (straight-through its inner steps).
                moved = {k: prior[k] + (posterior[k] - prior[k]).detach() for k in prior}
                reconstruction = sum(loss_fn(sample(moved, names), query) for _ in range(config.samples)) / config.samples
                fidelity = mean_kl(posterior, prior, names)  # pulls the prior toward the task posteriors
                loss = (reconstruction + config.beta * fidelity) / len(picked)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite ELBO at meta-step {step + 1} (task {tasks[t]})")
                loss.backward()
                total += loss.item()
            optimizer.step()
            history.append(total)
    job.log["meta_losses"] = history
    return {k: v.detach() for k, v in prior.items()}


def finish(job: BaselineJob, config: AbmllConfig, meta: dict[str, torch.Tensor], out: Path, started: float
           ) -> dict[str, Any]:
    """Infer the target's posterior from its support examples and write it with `eval_samples` adapters
    drawn from it, as an ensemble directory that `degaml evaluate` scores by averaging the members' answer
    probabilities."""
    s = job.setup
    prior = {k: v.to(job.lm.device) for k, v in meta.items()}
    names = [k[len("mu."):] for k in prior if k.startswith("mu.")]
    sampler = torch.Generator().manual_seed(s.seed + 1)
    with peft_model(job.lm, s.lora) as model:
        loss_fn = model_loss(model)
        batches = [sample_batch(job.lm, job.support, s.batch_size, sampler) for _ in range(s.steps)]
        posterior = infer_posterior(loss_fn, prior, names, batches, config) if batches else prior
    draws = torch.Generator().manual_seed(s.seed + 2)
    info = {"baseline": "abmll", "task": job.task, "train_tasks": job.train_tasks, "setup": asdict(s),
            "config": asdict(config), "support_examples": len(job.support), "target_steps": len(batches), **job.log}
    members = []
    for i in range(config.eval_samples):
        drawn = sample(posterior, names, draws)
        # Live parameter names carry the adapter name; saved adapters do not.
        members.append(({n.replace(".default.weight", ".weight"): v.float().cpu() for n, v in drawn.items()},
                        {"sample": i}))
    info.update(seconds=time.perf_counter() - started, **peak_memory_mb(job.lm.device))
    return write_ensemble(members, s.lora, s.model.name, out, "mean", info,
                          tensors={POSTERIOR_FILE: {k: v.float().cpu() for k, v in posterior.items()}})


CONFIG = AbmllConfig
