"""What only a CUDA device exercises: bf16 autocast with float32 losses, channels_last, views
drawn from a device generator, and peak-memory accounting. Skipped without CUDA; run with
`python -m pytest -m gpu -q` (bench/gpu.sh does, on a GPU host)."""

from __future__ import annotations

import pytest
import torch

from s3l_core.config import AugmentConfig, TrialConfig
from s3l_core.data import load_dataset
from s3l_core.losses import byol_loss, info_nce, moco_infonce, nt_xent, simsiam_loss
from s3l_core.trainer import train
from s3l_core.views import make_views, preset_for

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TINY = {
    "dataset": "fashion-mnist-sample",
    "backbone": {"depth": 10, "width": 0.125},
    "resolution": 12,
    "epochs": 2,
    "data_fraction": 0.1,
    "batch_size": 64,
    "eval": {"every": 1, "knn_k": 20, "resolution": 12, "linear_probe": False, "floors": False},
    "device": "cuda",
}


@pytest.fixture(scope="module")
def sample():
    return load_dataset("fashion-mnist-sample")


def tiny(**overrides) -> TrialConfig:
    return TrialConfig.from_dict({**TINY, **overrides})


class ConvInputs:
    """Records the dtype and memory format of every Conv2d input and output during a block."""

    def __init__(self):
        self.seen: list[tuple[torch.dtype, bool, torch.dtype]] = []

    def __enter__(self):
        def hook(module, inputs, output):
            if not (isinstance(module, torch.nn.Conv2d) and module.training):
                return
            x = inputs[0]
            # the FLOP counter's forward runs on the meta device, where autocast does not apply
            if x.device.type == "cuda":
                if x.shape[1] > 1:  # a one-channel NCHW tensor is channels_last too: no evidence either way
                    self.seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last), output.dtype))

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_training_runs_convolutions_in_bf16_on_channels_last_tensors(sample):
    with ConvInputs() as convs:
        result = train(tiny(), dataset=sample)
    assert convs.seen, "no training convolution ran"
    assert all(out == torch.bfloat16 for _, _, out in convs.seen), "autocast is off: convolutions ran in float32"
    assert all(channels_last for _, channels_last, _ in convs.seen), "activations are NCHW: the model is not channels_last"
    assert all(torch.isfinite(torch.tensor([e.loss for e in result.epochs])))


def test_fine_tuning_runs_convolutions_in_bf16_on_channels_last_tensors(sample):
    from s3l_core.backbone import build_resnet
    from s3l_core.config import BackboneConfig, FinetuneConfig
    from s3l_core.finetune import finetune

    torch.manual_seed(0)
    encoder = build_resnet(10, 0.125, 4, 1, "cifar").cuda()
    images, labels = sample.train_images[:256], sample.train_labels[:256]
    with ConvInputs() as convs:
        result = finetune(encoder, BackboneConfig(depth=10, width=0.125), images, labels, {"val": (images, labels)},
                          FinetuneConfig(epochs=1, lr=0.1), resolution=12, mean=torch.tensor([0.3]), std=torch.tensor([0.35]),
                          num_classes=10, device=torch.device("cuda"), seed=0, batch_size=64)
    assert convs.seen, "no fine-tuning convolution ran"
    assert all(out == torch.bfloat16 for _, _, out in convs.seen), "autocast is off: convolutions ran in float32"
    assert all(channels_last for _, channels_last, _ in convs.seen), "activations are NCHW: the network is not channels_last"
    assert 0.0 <= result.top1["val"] <= 1.0


@pytest.mark.parametrize("name", ["info_nce", "nt_xent", "moco_infonce", "byol_loss", "simsiam_loss"])
def test_losses_stay_float32_under_bf16_autocast_on_cuda(name: str):
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(32, 16, device="cuda", generator=g, requires_grad=True)
    b = torch.randn(32, 16, device="cuda", generator=g)
    queue = torch.randn(64, 16, device="cuda", generator=g)
    loss_fn = {"info_nce": lambda: info_nce(a, b, 0.1), "nt_xent": lambda: nt_xent(a, b, 0.1),
               "moco_infonce": lambda: moco_infonce(a, b, queue, 0.1), "byol_loss": lambda: byol_loss(a, b),
               "simsiam_loss": lambda: simsiam_loss(a, b)}[name]  # fmt: skip
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = loss_fn()
    reference = loss_fn()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)  # bf16 rounding of the logits would show here


def test_views_come_from_the_device_generator_and_replay_from_its_state():
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, device="cuda")
    preset = preset_for("simclr", AugmentConfig(), 12)
    mean, std = torch.full((3,), 0.5, device="cuda"), torch.full((3,), 0.25, device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(1)
    state = generator.get_state()
    first = make_views(images, 12, preset, mean, std, generator)
    assert all(v.device.type == "cuda" for v in first)
    generator.set_state(state)
    again = make_views(images, 12, preset, mean, std, generator)
    assert all(torch.equal(x, y) for x, y in zip(first, again)), "a resumed run would draw other views"
    other = make_views(images, 12, preset, mean, std, torch.Generator(device="cuda").manual_seed(2))
    assert not torch.equal(first[0], other[0])


def test_peak_memory_is_the_cuda_allocators_and_grows_with_the_batch(sample):
    torch.cuda.empty_cache()
    small = train(tiny(epochs=1, batch_size=32), dataset=sample)
    large = train(tiny(epochs=1, batch_size=256), dataset=sample)
    assert 0 < small.peak_mem_mb < large.peak_mem_mb
    assert large.peak_mem_mb <= torch.cuda.max_memory_allocated() / 2**20 + 1e-6
    assert large.peak_mem_mb < torch.cuda.get_device_properties(0).total_memory / 2**20
    assert small.device == torch.cuda.get_device_name(0)
