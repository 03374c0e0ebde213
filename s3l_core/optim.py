"""Optimisers as the methods' references build them: SGD or LARS, no weight decay on BN and biases.

- Learning rates are given per `LR_REFERENCE_BATCH` images and scaled linearly with the batch
  actually used (`scaled_lr`; Goyal et al., 2017; SimCLR, MoCo, SimSiam and BYOL all do).
- Batch-norm parameters and biases (every parameter of one dimension or less, or named
  `*bias`) take no weight decay and, under LARS, no trust-ratio adaptation, as SimCLR's and
  BYOL's LARS exclude them (solo-learn's `exclude_bias_n_norm`).
- LARS (You et al., 2017, arXiv 1708.03888) in the LARC form solo-learn's CIFAR recipes use
  (`solo/utils/lars.py`, eta 0.02, `clip_lr`): per tensor, the update
  lr * min(eta * |w| / (|g| + wd * |w|), lr) / lr * (g + wd * w), then SGD momentum. It is
  written here (about 40 lines) rather than taken from timm, whose `Lars` is the same
  algorithm: the GPU hosts run offline with PyTorch alone, and timm would bring
  huggingface_hub and its HTTP stack with it.

Every group carries the same base rate: the trainer sets `group["lr"]` on all groups each step.
Parameters with `requires_grad=False` (momentum encoders) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from s3l_core.config import LR_REFERENCE_BATCH, OptimizerConfig

# solo-learn's CIFAR SimCLR and BYOL recipes (scripts/pretrain/cifar/{simclr,byol}.yaml).
LARS_TRUST_COEFFICIENT = 0.02
LARS_CLIP = True
LARS_EPS = 1e-8


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The learning rate for `batch_size` images of a rate given per `LR_REFERENCE_BATCH` images."""
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1")
    return base_lr * batch_size / LR_REFERENCE_BATCH


def takes_weight_decay(name: str, parameter: Tensor) -> bool:
    """False for batch-norm parameters and biases: every tensor of one dimension or less, or named `*bias`."""
    return parameter.ndim > 1 and not name.endswith("bias")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: weights with `weight_decay` and LARS adaptation, BN and biases without either."""
    decayed, exempt = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (decayed if takes_weight_decay(name, parameter) else exempt).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": weight_decay, "lars_adapt": True},
        {"params": exempt, "weight_decay": 0.0, "lars_adapt": False},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, optimizer: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD or LARS (`optimizer.name`) over `model`'s trainable parameters, from a resolved config.

    The groups start at `optimizer.lr`; the caller sets each step's (batch-scaled, scheduled) rate.
    """
    if optimizer.name is None or optimizer.lr is None or optimizer.weight_decay is None:
        raise ValueError("optimizer config is not resolved: build it with TrialConfig.from_dict or resolve_recipe")
    groups = parameter_groups(model, optimizer.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if optimizer.name == "sgd":
        for group in groups:
            del group["lars_adapt"]
        return torch.optim.SGD(groups, lr=optimizer.lr, momentum=optimizer.momentum)
    if optimizer.name == "lars":
        return LARS(groups, lr=optimizer.lr, momentum=optimizer.momentum)
    raise ValueError(f"unknown optimizer '{optimizer.name}'; known: sgd, lars")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and LARS trust ratios (LARC form, see the module docstring).

    A group with `lars_adapt=False` is plain SGD with its `weight_decay`; `parameter_groups`
    gives batch-norm parameters and biases such a group with no weight decay.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = LARS_TRUST_COEFFICIENT,
        clip: bool = LARS_CLIP,
        eps: float = LARS_EPS,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError("lr, momentum and weight_decay must be >= 0 and trust_coefficient > 0")
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient, clip=clip, eps=eps, lars_adapt=True
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            decay = group["weight_decay"]
            updates = torch._foreach_add(grads, params, alpha=decay) if decay else [g.clone() for g in grads]
            if group["lars_adapt"]:
                torch._foreach_mul_(updates, self.trust_ratios(params, grads, group))
            self._momentum_step(params, updates, group)
        return loss

    @staticmethod
    def trust_ratios(params: list[Tensor], grads: list[Tensor], group: dict[str, Any]) -> list[Tensor]:
        """Per tensor: eta * |w| / (|g| + wd * |w|), divided by lr and capped at 1 when clipping; 1 where |w| or |g| is 0."""
        w_norm = torch.stack(torch._foreach_norm(params))
        g_norm = torch.stack(torch._foreach_norm(grads))
        ratio = group["trust_coefficient"] * w_norm / (g_norm + group["weight_decay"] * w_norm + group["eps"])
        if group["clip"]:
            ratio = (ratio / group["lr"]).clamp(max=1.0) if group["lr"] > 0 else torch.ones_like(ratio)
        ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
        return list(ratio.unbind())

    def _momentum_step(self, params: list[Tensor], updates: list[Tensor], group: dict[str, Any]) -> None:
        """PyTorch SGD's momentum (the buffer starts as the first update), then p -= lr * buffer."""
        momentum = group["momentum"]
        if momentum:
            buffers = []
            for p, u in zip(params, updates):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = u.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(u)
                buffers.append(state["momentum_buffer"])
            updates = buffers
        torch._foreach_add_(params, updates, alpha=-group["lr"])
