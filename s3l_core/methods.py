"""Self-supervised methods: each a small module whose forward returns what its loss needs.

All methods push both views through the networks as one concatenated batch, so batch-norm
statistics span the 2N samples (as in SimCLR) and a step launches half the kernels.
Momentum (target) networks are registered submodules with `requires_grad=False`: they are
in `state_dict()` and outside the optimiser.

Heads follow each method's reference; their sizes come resolved in `MethodConfig` from
`s3l_core.recipes` (hidden sizes scaled with the backbone width):
- SimCLR: Linear-BN-ReLU-Linear (SimCLR; solo-learn's CIFAR recipe).
- MoCo v2: Linear-ReLU-Linear with biases and no BN (facebookresearch/moco `--mlp`).
- BYOL: projector and predictor Linear-BN-ReLU-Linear, predictor hidden `predictor_hidden_dim`.
- SimSiam: projector with BN on every layer and a non-affine BN on its output; 2 layers on
  the small-image (CIFAR) stem, as the SimSiam paper's CIFAR experiments, 3 layers on the
  ImageNet stem, as its ImageNet model; predictor Linear-BN-ReLU-Linear with the bottleneck
  `predictor_hidden_dim` (512 at width 1.0).
"""

from __future__ import annotations

import abc
import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import ResNet
from .config import ConfigError, ConfigProblem, MethodConfig
from .losses import byol_loss, moco_infonce, nt_xent, simsiam_loss

# `torch.compiler.disable` imports torch._dynamo (about a second) when it decorates, so importing
# this module paid for it on every command. torch's own lazy form of it imports dynamo at the first
# call instead; compiled code still calls the function eagerly (a graph break), as with
# torch.compiler.disable (recursive, the default of both). Without it (a torch that dropped the
# private name) the eager decorator is used.
outside_compiled_regions = getattr(torch, "_disable_dynamo", None) or torch.compiler.disable


def mlp(
    in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, last_bn: bool = False, hidden_bn: bool = True
) -> nn.Sequential:
    """Linear-BN-ReLU hidden layers (Linear-ReLU without `hidden_bn`, as MoCo v2's head) then a
    linear output (with a non-affine BN if `last_bn`, as SimSiam's projector)."""
    if num_layers < 1:
        raise ValueError(f"num_layers {num_layers} must be >= 1")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        if hidden_bn:  # a bias before BN is cancelled by it
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        else:
            layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters take no gradient: the start of a momentum/target network."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, over parameters (one fused op per dtype/device)."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - momentum)


class SplitBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over interleaved groups of the batch (sample i in group i % groups), always with batch statistics.

    The single-process stand-in for MoCo's shuffle BN, after the official MoCo CIFAR-10 demo.
    Parameter and buffer names match `nn.BatchNorm*d`, so EMA and state dicts line up with
    the online network; running statistics are left untouched since this net is never evaluated.
    """

    def __init__(self, source: nn.modules.batchnorm._BatchNorm, max_groups: int):
        super().__init__(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
        self.load_state_dict(source.state_dict())
        for mine, theirs in zip(self.parameters(), source.parameters()):
            mine.requires_grad_(theirs.requires_grad)
        self.max_groups = max_groups

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        groups = max(g for g in range(1, self.max_groups + 1) if n % g == 0 and n // g >= 2) if n >= 2 else 1
        # Sample i is in group i % g, so (n, C, ...) read as (n/g, g*C, ...) puts group j's channel c
        # in channel j*C + c: one native batch norm then normalises every group (as the MoCo demo).
        folded = x.float().reshape(n // groups, groups * c, *x.shape[2:])
        weight, bias = (self.weight.repeat(groups), self.bias.repeat(groups)) if self.affine else (None, None)
        out = F.batch_norm(folded, None, None, weight, bias, training=True, eps=self.eps)
        return out.view(x.shape).to(x.dtype)


def with_split_batch_norm(module: nn.Module, max_groups: int) -> nn.Module:
    """Replace every batch-norm layer of `module` in place by a `SplitBatchNorm`; returns `module`."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, SplitBatchNorm(child, max_groups))
        else:
            with_split_batch_norm(child, max_groups)
    return module


def resolved_sizes(params: MethodConfig, *names: str) -> list[int]:
    """The resolved head sizes `names` of `params`; a None means the recipe was never applied."""
    sizes = [getattr(params, name) for name in names]
    missing = [name for name, size in zip(names, sizes) if size is None]
    if missing:
        raise ValueError(
            f"method_params.{', '.join(missing)} not set: build configs with TrialConfig.from_dict "
            "or s3l_core.config.resolve_recipe, which fill them from the method's recipe"
        )
    return sizes


class SSLMethod(nn.Module, abc.ABC):
    """A training objective around `encoder`, the backbone whose features are evaluated.

    `num_classes` is read only by the supervised reference, `num_train_images` (the size of
    the pre-training set) only by MoCo, whose queue it caps.
    """

    encoder: ResNet

    def __init__(self, encoder: ResNet, params: MethodConfig, num_classes: int = 0, num_train_images: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.params = params

    @abc.abstractmethod
    def loss(self, view1: Tensor, view2: Tensor, labels: Tensor) -> Tensor:
        """Scalar training loss of one batch; `labels` is read only by the supervised reference."""

    def after_step(self, progress: float) -> None:
        """Called after each optimiser step, `progress` in [0, 1] over the whole run."""


class SimCLR(SSLMethod):
    """SimCLR (Chen et al., 2020, arXiv 2002.05709): encoder + MLP projector, NT-Xent over 2N-2 negatives."""

    def __init__(self, encoder: ResNet, params: MethodConfig, num_classes: int = 0, num_train_images: int | None = None):
        super().__init__(encoder, params)
        hidden, projection = resolved_sizes(params, "hidden_dim", "projection_dim")
        self.projector = mlp(encoder.feature_dim, hidden, projection)

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        z1, z2 = self.projector(self.encoder(torch.cat([view1, view2]))).chunk(2)
        return z1, z2

    def loss(self, view1: Tensor, view2: Tensor, labels: Tensor) -> Tensor:
        return nt_xent(*self(view1, view2), self.params.temperature)


class MoCoV2(SSLMethod):
    """MoCo v2 (Chen et al., 2020, arXiv 2003.04297), symmetrised, in one process.

    A query encoder + Linear-ReLU-Linear head (no BN, as facebookresearch/moco's `--mlp`), a
    key encoder + head updated as an EMA with momentum `params.ema`, and a queue of past keys
    as negatives: `params.queue_size` of them, capped at the number of pre-training images so
    the queue cannot hold several keys of one image.

    Shuffle BN in one process, as the official MoCo CIFAR-10 demo: the key network normalises
    the batch in up to `KEY_BN_GROUPS` interleaved groups (`SplitBatchNorm`, the demo's 8
    simulated GPUs), and the key batch is shuffled before the key encoder and un-shuffled
    after (the demo's `_batch_shuffle_single_gpu`), so the samples that share a key's batch
    statistics are a random set, unrelated to its query's. Without that a positive pair can be
    recognised through the statistics it shares (MoCo, section 3.3). The query encoder keeps
    ordinary batch norm over the whole batch (the demo splits it too), so the evaluated
    encoder is a plain ResNet. The shuffle draws from the module's own generator, seeded from
    the global one when the module is built and saved in `state_dict()`, so a resumed run
    shuffles as the uninterrupted one would.
    """

    KEY_BN_GROUPS = 8

    def __init__(self, encoder: ResNet, params: MethodConfig, num_classes: int = 0, num_train_images: int | None = None):
        super().__init__(encoder, params)
        hidden, projection = resolved_sizes(params, "hidden_dim", "projection_dim")
        self.projector = mlp(encoder.feature_dim, hidden, projection, hidden_bn=False)
        self.key_encoder = with_split_batch_norm(frozen_copy(encoder), self.KEY_BN_GROUPS)
        self.key_projector = with_split_batch_norm(frozen_copy(self.projector), self.KEY_BN_GROUPS)
        queue_size = params.queue_size if num_train_images is None else max(1, min(params.queue_size, num_train_images))
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        seed = int(torch.randint(2**62, (1,), device="cpu"))  # from the global generator: a trial's seed fixes it
        self.shuffle_generator = torch.Generator(device="cpu").manual_seed(seed)

    def get_extra_state(self) -> Tensor:
        return self.shuffle_generator.get_state()

    def set_extra_state(self, state: Tensor) -> None:
        self.shuffle_generator.set_state(state.cpu())

    @outside_compiled_regions  # a CPU generator is no graph input: draw outside any compiled region
    def _key_shuffle(self, size: int, device: torch.device) -> Tensor:
        return torch.randperm(size, generator=self.shuffle_generator, device="cpu").to(device, non_blocking=True)

    @torch.no_grad()
    def keys(self, images: Tensor) -> Tensor:
        """Key-network outputs of `images`, computed on a shuffled batch and returned in the input order."""
        shuffle = self._key_shuffle(len(images), images.device)
        keys = self.key_projector(self.key_encoder(images[shuffle]))
        return keys[torch.argsort(shuffle)]

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        both = torch.cat([view1, view2])
        q1, q2 = self.projector(self.encoder(both)).chunk(2)
        k1, k2 = self.keys(both).chunk(2)
        return q1, q2, k1, k2

    def loss(self, view1: Tensor, view2: Tensor, labels: Tensor) -> Tensor:
        q1, q2, k1, k2 = self(view1, view2)
        # The loss keeps the queue for its backward pass, so it sees a copy taken before this batch is enqueued.
        queue = self.queue.clone()
        t = self.params.temperature
        loss = (moco_infonce(q1, k2, queue, t) + moco_infonce(q2, k1, queue, t)) / 2
        self._enqueue(torch.cat([k1, k2]))
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        """Write `keys` over the oldest entries (only the newest `queue_size` if there are more), without a host sync."""
        size = self.queue.shape[0]
        keys = F.normalize(keys.float(), dim=1)[-size:].to(self.queue.dtype)
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue.index_copy_(0, slots, keys)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)

    def after_step(self, progress: float) -> None:
        ema_update(self.key_encoder, self.encoder, self.params.ema)
        ema_update(self.key_projector, self.projector, self.params.ema)


class BYOL(SSLMethod):
    """BYOL (Grill et al., 2020, arXiv 2006.07733): online encoder+projector+predictor regress an EMA target.

    Projector and predictor are Linear-BN-ReLU-Linear (hidden 4096 at width 1.0, output 256,
    as the paper). The target momentum rises from `params.ema` to 1 on BYOL's cosine
    schedule; the loss is symmetrised by summing both directions, as in the paper.
    """

    def __init__(self, encoder: ResNet, params: MethodConfig, num_classes: int = 0, num_train_images: int | None = None):
        super().__init__(encoder, params)
        hidden, projection, predictor_hidden = resolved_sizes(params, "hidden_dim", "projection_dim", "predictor_hidden_dim")
        self.projector = mlp(encoder.feature_dim, hidden, projection)
        self.predictor = mlp(projection, predictor_hidden, projection)
        self.target_encoder = frozen_copy(encoder)
        self.target_projector = frozen_copy(self.projector)

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        both = torch.cat([view1, view2])
        p1, p2 = self.predictor(self.projector(self.encoder(both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(both)).chunk(2)
        return p1, p2, z1, z2

    def loss(self, view1: Tensor, view2: Tensor, labels: Tensor) -> Tensor:
        p1, p2, z1, z2 = self(view1, view2)
        return byol_loss(p1, z2) + byol_loss(p2, z1)

    def momentum(self, progress: float) -> float:
        return 1 - (1 - self.params.ema) * (math.cos(math.pi * progress) + 1) / 2

    def after_step(self, progress: float) -> None:
        m = self.momentum(progress)
        ema_update(self.target_encoder, self.encoder, m)
        ema_update(self.target_projector, self.projector, m)


class SimSiam(SSLMethod):
    """SimSiam (Chen & He, 2021, arXiv 2011.10566): projector, bottleneck predictor, stop-gradient.

    The projector has BN on every layer, the output's non-affine; it has 2 layers on the
    CIFAR stem, as the paper's CIFAR experiments, and 3 on the ImageNet stem, as its ImageNet
    model (`PROJECTOR_LAYERS`). The predictor's hidden layer is `predictor_hidden_dim`, the
    paper's 2048 -> 512 -> 2048 bottleneck at width 1.0.
    """

    PROJECTOR_LAYERS = {"cifar": 2, "imagenet": 3}

    def __init__(self, encoder: ResNet, params: MethodConfig, num_classes: int = 0, num_train_images: int | None = None):
        super().__init__(encoder, params)
        hidden, dim, predictor_hidden = resolved_sizes(params, "hidden_dim", "projection_dim", "predictor_hidden_dim")
        layers = self.PROJECTOR_LAYERS[encoder.stem_name]
        self.projector = mlp(encoder.feature_dim, hidden, dim, num_layers=layers, last_bn=True)
        self.predictor = mlp(dim, predictor_hidden, dim)

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z = self.projector(self.encoder(torch.cat([view1, view2])))
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        return p1, p2, z1, z2

    def loss(self, view1: Tensor, view2: Tensor, labels: Tensor) -> Tensor:
        p1, p2, z1, z2 = self(view1, view2)
        return (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2


class Supervised(SSLMethod):
    """The supervised reference: a linear classifier on the features, cross-entropy on both views."""

    def __init__(self, encoder: ResNet, params: MethodConfig, num_classes: int = 0, num_train_images: int | None = None):
        super().__init__(encoder, params)
        if num_classes < 1:
            raise ValueError(f"supervised training needs num_classes >= 1, got {num_classes}")
        self.classifier = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        return self.classifier(self.encoder(torch.cat([view1, view2])))

    def loss(self, view1: Tensor, view2: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self(view1, view2), labels.repeat(2))


METHODS: dict[str, type[SSLMethod]] = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "byol": BYOL,
    "simsiam": SimSiam,
    "supervised": Supervised,
}


def build_method(
    name: str, encoder: ResNet, params: MethodConfig, num_classes: int, num_train_images: int | None = None
) -> SSLMethod:
    """The method `name` around `encoder`, its heads sized by the resolved `params`.

    `num_classes` is used only by the supervised reference; `num_train_images`, the number of
    pre-training images, caps MoCo's queue (None: no cap).
    """
    if name not in METHODS:  # a ConfigError: Ray does not retry it (a retry cannot fix a config)
        raise ConfigError([ConfigProblem("method", f"unknown method '{name}'; known: {', '.join(METHODS)}")])
    return METHODS[name](encoder, params, num_classes, num_train_images)
