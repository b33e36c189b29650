"""The adaptation policy (docs/design.md, policy): picks, per task, a family and its hyper-parameters.

State: a feature vector known at test time without labels (task embedding, statistics of the generated
adapter, the base model's confidence and entropy on the task's prompts); each action also carries its
cost. Policy: a linear softmax over the discrete actions, trained on (state, action, reward) triples
where the reward is measured on *validation* partitions. Two trainers:

- `reinforce`: policy gradient with a running-mean baseline and an entropy bonus;
- `rest_em`: the reference's ReST^EM: keep the actions whose reward reached the threshold, fit them
  by maximum likelihood, repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..io import atomic_write_json, read_json_object
from .actions import Action


@dataclass
class PolicyConfig:
    algorithm: Literal["reinforce", "rest_em"] = "reinforce"
    """The learning rule: REINFORCE with a moving-average baseline, or ReST^EM (imitate the rewarded samples)."""
    epochs: int = 200
    lr: float = 0.05
    entropy_bonus: float = 0.01
    cost_penalty: float = 0.0
    """Subtracted from the reward per unit of action cost."""
    rest_threshold: float = 0.0
    """ReST^EM keeps samples whose reward is at least this (reference: accuracy >= the generated adapter's)."""
    samples_per_state: int = 4
    seed: int = 0


class LinearPolicy(nn.Module):
    def __init__(self, state_dim: int, actions: Sequence[Action]) -> None:
        super().__init__()
        self.actions = list(actions)
        self.linear = nn.Linear(state_dim, len(self.actions))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)  # start uniform over actions
        # Raw features mix scales (embeddings ~0.1, adapter norms ~1000): standardize with training statistics.
        self.register_buffer("feature_mean", torch.zeros(state_dim))
        self.register_buffer("feature_std", torch.ones(state_dim))

    def fit_normalization(self, states: torch.Tensor) -> None:
        self.feature_mean.copy_(states.mean(0))
        std = states.std(0, unbiased=False) if len(states) > 1 else torch.ones_like(self.feature_std)
        self.feature_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.shape[-1] != self.linear.in_features:
            raise ValueError(f"policy expects {self.linear.in_features} state features, got {states.shape[-1]} "
                             "(was it trained with another encoder or model?)")
        normalized = (states.float() - self.feature_mean) / self.feature_std
        return torch.log_softmax(self.linear(normalized), dim=-1)

    def scores(self, state: torch.Tensor) -> dict[str, float]:
        """Probability of every action for one state: what `degaml adapt` prints as its reasons."""
        with torch.no_grad():
            probs = self(state[None])[0].exp()
        return {a.label: float(p) for a, p in zip(self.actions, probs)}

    def choose(self, state: torch.Tensor) -> Action:
        with torch.no_grad():
            return self.actions[int(self(state[None])[0].argmax())]


RewardFn = Callable[[int, Action], float]
"""(state index, action) -> reward, e.g. validation accuracy gain over the generated adapter."""


def train_policy(states: torch.Tensor, reward: RewardFn, actions: Sequence[Action], config: PolicyConfig
                 ) -> tuple[LinearPolicy, list[float]]:
    """Train on `states` (n, d). Returns the policy and the mean sampled reward per epoch."""
    torch.manual_seed(config.seed)
    policy = LinearPolicy(states.shape[1], actions)
    policy.fit_normalization(states)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    sampler = torch.Generator().manual_seed(config.seed)
    cache: dict[tuple[int, int], float] = {}  # rewards are measured runs: never measure one twice

    def shaped(i: int, a: int) -> float:
        if (i, a) not in cache:
            cache[(i, a)] = reward(i, policy.actions[a])
        return cache[(i, a)] - config.cost_penalty * policy.actions[a].cost

    baseline, history = 0.0, []
    for _ in range(config.epochs):
        log_probs = policy(states)
        picks = torch.multinomial(log_probs.exp().detach(), config.samples_per_state, replacement=True,
                                  generator=sampler)
        rewards = torch.tensor([[shaped(i, int(a)) for a in row] for i, row in enumerate(picks)])
        chosen = log_probs.gather(1, picks)
        if config.algorithm == "reinforce":
            loss = -((rewards - baseline) * chosen).mean()
            loss = loss - config.entropy_bonus * -(log_probs.exp() * log_probs).sum(-1).mean()
            baseline = 0.9 * baseline + 0.1 * float(rewards.mean())
        else:
            keep = rewards >= config.rest_threshold
            if not keep.any():
                history.append(float(rewards.mean()))
                continue
            loss = -chosen[keep].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(rewards.mean()))
    return policy, history


POLICY_FILE = "policy.json"


@dataclass
class PolicyRecord:
    """POLICY_FILE, beside the weights (policy.pt): how a policy was trained and the actions it chooses among."""

    config: PolicyConfig
    state_dim: int
    actions: list[dict]
    """`Action.to_dict()` of each, in the policy's output order."""
    generators: dict[str, str] = field(default_factory=dict)
    """{reward task: the generator directory that adapted it}."""
    tasks: list[str] = field(default_factory=list)
    in_sample_tasks: list[str] = field(default_factory=list)
    choices_on_training_tasks: dict[str, str] = field(default_factory=dict)
    reward_history: list[float] = field(default_factory=list)
    limit: int | None = None
    """Validation items per reward task."""

    def save(self, out: Path) -> None:
        atomic_write_json(Path(out) / POLICY_FILE, asdict(self))

    @classmethod
    def load(cls, out: Path) -> PolicyRecord:
        """The record in `out`, refused in one line naming the file; policies saved before `algorithm` was named
        so (`method`) load under today's name."""
        path = Path(out) / POLICY_FILE
        record = read_json_object(path, "policy record")
        try:
            config = dict(record.pop("config"))
            if "method" in config:
                config["algorithm"] = config.pop("method")
            return cls(config=PolicyConfig(**config), **record)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a policy record ({type(e).__name__}: {e})") from None


def save_policy(policy: LinearPolicy, config: PolicyConfig, out: Path, extra: dict | None = None) -> Path:
    """The policy's weights and its `PolicyRecord` (`extra` holds the record's optional fields)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".policy.pt.tmp"
    torch.save(policy.state_dict(), tmp)
    tmp.replace(out / "policy.pt")
    PolicyRecord(config, policy.linear.in_features, [a.to_dict() for a in policy.actions], **(extra or {})).save(out)
    return out


def load_policy(out: Path) -> LinearPolicy:
    record = PolicyRecord.load(out)
    policy = LinearPolicy(record.state_dim, [Action.from_dict(a) for a in record.actions])
    policy.load_state_dict(torch.load(out / "policy.pt", weights_only=True))
    return policy


@dataclass
class StateFeatures:
    """The label-free state of one task, concatenated into the policy's input vector."""

    task_embedding: torch.Tensor
    """Mean sentence embedding of the task's prompts."""
    adapter_stats: torch.Tensor
    """Norms of the generated adapter: mean and std of per-module ||B A|| proxies (||A||, ||B||)."""
    confidence: float
    """Base model's mean max-probability of the next token over the prompts."""
    entropy: float
    """Base model's mean next-token entropy over the prompts."""
    choice: list[float] = field(default_factory=list)
    """How the generated adapter ranks the unlabelled items' options (`task_setup.choice_features`)."""

    def vector(self) -> torch.Tensor:
        return torch.cat([self.task_embedding.float(), self.adapter_stats.float(),
                          torch.tensor([self.confidence, self.entropy, *self.choice])])


def adapter_statistics(state: dict[str, torch.Tensor]) -> torch.Tensor:
    a = torch.stack([v.float().norm() for k, v in state.items() if ".lora_A." in k])
    b = torch.stack([v.float().norm() for k, v in state.items() if ".lora_B." in k])
    return torch.stack([a.mean(), a.std(unbiased=False), b.mean(), b.std(unbiased=False)])


def confidence_and_entropy(logits: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Mean max-probability and entropy of next-token distributions over the unpadded positions."""
    probs = torch.softmax(logits.float(), -1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum(-1)
    weight = mask.float()
    return float((probs.max(-1).values * weight).sum() / weight.sum()), float((entropy * weight).sum() / weight.sum())
