"""Each method's reference recipe: optimiser, learning rate, weight decay and head sizes.

A trial config leaves these None unless a study sets them; `TrialConfig.from_dict` fills
them from here, so the resolved config (and every record of it) states what was used.
Learning rates are per 256 images (the trainer scales them linearly with the batch).
Hidden sizes are the references' sizes at width 1.0 and scale with the backbone width, so a
width study shrinks the heads with the encoder; output sizes (the loss space) stay fixed.

Sources, small-image recipes where the reference has one:
- SimCLR (Chen et al., 2020; solo-learn's CIFAR script `scripts/pretrain/cifar/simclr.sh`):
  LARS, lr 0.4, weight decay 1e-5, projector 2048 -> 128 (the paper's output size; solo-learn
  uses 256).
- MoCo v2 (Chen et al., 2020; facebookresearch/moco's CIFAR-10 demo): SGD, lr 0.06 at batch
  512 (0.03 per 256), weight decay 5e-4, projector Linear-ReLU-Linear 2048 -> 128 (no BN;
  hidden 2048 as solo-learn's CIFAR ResNet-18, where facebookresearch/moco sizes it to the
  encoder's features, 2048 on its ResNet-50).
- BYOL (Grill et al., 2020; solo-learn's CIFAR config `byol.yaml`): LARS, lr 1.0, weight
  decay 1e-5, projector 4096 -> 256, predictor 4096.
- SimSiam (Chen & He, 2021, CIFAR experiments): SGD, lr 0.03 per 256, weight decay 5e-4,
  projector 2048 -> 2048 (2 layers on the CIFAR stem, 3 on the ImageNet stem: see
  `s3l_core.methods`), predictor bottleneck 512.
- supervised reference: SGD, lr 0.1, weight decay 5e-4.
LARS is solo-learn's (`s3l_core.optim`): trust coefficient 0.02, clipped, no weight decay and
no adaptation for batch-norm parameters and biases, as in SimCLR and BYOL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # sgd | lars
    lr: float  # per 256 images
    weight_decay: float
    hidden_dim: int  # at width 1.0
    projection_dim: int
    predictor_hidden_dim: int | None = None  # at width 1.0; byol / simsiam
    scale_projection: bool = False  # simsiam: the projection is as wide as its hidden layer


RECIPES: dict[str, Recipe] = {
    "simclr": Recipe("lars", 0.4, 1e-5, 2048, 128),
    "moco_v2": Recipe("sgd", 0.03, 5e-4, 2048, 128),
    "byol": Recipe("lars", 1.0, 1e-5, 4096, 256, predictor_hidden_dim=4096),
    "simsiam": Recipe("sgd", 0.03, 5e-4, 2048, 2048, predictor_hidden_dim=512, scale_projection=True),
    "supervised": Recipe("sgd", 0.1, 5e-4, 2048, 128),
}
MIN_HEAD_DIM = 16  # a width of 0.01 must still leave a usable head


def scaled_dim(dim: int, width: float) -> int:
    return max(MIN_HEAD_DIM, round(dim * width))


def head_sizes(method: str, width: float) -> tuple[int, int, int | None]:
    """(hidden_dim, projection_dim, predictor_hidden_dim) of `method` at backbone `width`."""
    r = RECIPES[method]
    projection = scaled_dim(r.projection_dim, width) if r.scale_projection else r.projection_dim
    predictor = scaled_dim(r.predictor_hidden_dim, width) if r.predictor_hidden_dim else None
    return scaled_dim(r.hidden_dim, width), projection, predictor
