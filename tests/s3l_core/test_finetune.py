from collections.abc import Iterator

import pytest
import torch
from torch import nn

from s3l_core import finetune as finetune_module
from s3l_core.backbone import ResNet, build_resnet
from s3l_core.config import BackboneConfig, FinetuneConfig
from s3l_core.data import channel_stats, load_digits
from s3l_core.image_dataset import ImageDataset
from s3l_core.finetune import FinetuneResult, finetune, recalibrate_bn, with_all_stages
from s3l_core.views import eval_batch

CPU = torch.device("cpu")
SETTINGS = FinetuneConfig(epochs=4, lr=0.8)
TRAIN = slice(200, 840)  # 640 training images: 10 steps of 64 per epoch
VAL = slice(0, 200)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These networks are tiny: one thread is faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_digits()


def stats(data: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = channel_stats(data.train_images)
    return torch.tensor(mean), torch.tensor(std)


def encoder(stages: int = 4, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    return build_resnet(10, 0.125, stages, 1, "cifar")


def bn_layers(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def test_bn_recalibration_takes_the_statistics_of_the_data_at_that_resolution(digits: ImageDataset) -> None:
    mean, std = stats(digits)
    net = encoder()
    images = digits.train_images[:512]
    with torch.no_grad():  # "pre-trained" at 8 px: BN statistics of 8 px inputs, with a history
        for chunk in digits.train_images[512:].split(128):
            net.train()(eval_batch(chunk, 8, mean, std))
    pretrained = [m.running_var.clone() for m in bn_layers(net)]
    # One batch of all the images: the recalibrated statistics must be exactly those of one
    # training-mode pass over them at 16 px (what BN would have seen training at 16 px).
    recalibrated = recalibrate_bn(net, images, 16, mean, std, CPU, num_images=512, batch_size=512)
    reference = encoder()
    for m in bn_layers(reference):
        m.momentum = 1.0  # running statistics = this batch's
    reference.train()(eval_batch(images, 16, mean, std))
    for mine, theirs in zip(bn_layers(recalibrated), bn_layers(reference), strict=True):
        torch.testing.assert_close(mine.running_mean, theirs.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mine.running_var, theirs.running_var, rtol=1e-4, atol=1e-5)
    assert not recalibrated.training
    assert all(torch.equal(m.running_var, v) for m, v in zip(bn_layers(net), pretrained))  # the original is untouched


def test_bn_recalibration_averages_over_batches_and_depends_on_the_resolution(digits: ImageDataset) -> None:
    mean, std = stats(digits)
    net = encoder()
    images = digits.train_images[:512]
    at_16 = recalibrate_bn(net, images, 16, mean, std, CPU, num_images=512, batch_size=128)
    stem_16 = bn_layers(at_16)[0]
    with torch.no_grad():
        conv = net.stem[0](eval_batch(images, 16, mean, std))
    # The stem BN sees the stem conv's output: a cumulative average of equal batches' means is the overall mean.
    torch.testing.assert_close(stem_16.running_mean, conv.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stem_16.running_var, conv.var(dim=(0, 2, 3)), rtol=0.05, atol=1e-4)
    # Upsampled 8 px digits are smoother at 32 px: the conv responses vary less than at 8 px.
    stem_8 = bn_layers(recalibrate_bn(net, images, 8, mean, std, CPU, num_images=512, batch_size=128))[0]
    stem_32 = bn_layers(recalibrate_bn(net, images, 32, mean, std, CPU, num_images=512, batch_size=128))[0]
    assert (stem_32.running_var < 0.8 * stem_8.running_var).float().mean() > 0.5


def run(data: ImageDataset, stages: int, seed: int = 0, global_seed: int = 0) -> FinetuneResult:
    mean, std = stats(data)
    val = (data.train_images[VAL], data.train_labels[VAL])
    pretrained = encoder(stages)
    torch.manual_seed(global_seed)  # fine-tuning must not depend on the global generator
    return finetune(
        pretrained,
        BackboneConfig(depth=10, width=0.125, stages=stages),
        data.train_images[TRAIN],
        data.train_labels[TRAIN],
        {"val": val, "test": (data.test_images, data.test_labels)},
        SETTINGS,
        resolution=8,
        mean=mean,
        std=std,
        num_classes=10,
        device=CPU,
        seed=seed,
        batch_size=64,
    )


def test_finetuning_learns_a_real_dataset_and_counts_its_flops(digits: ImageDataset) -> None:
    result = run(digits, stages=4)
    assert set(result.top1) == {"val", "test"}
    assert result.top1["test"] > 0.4 and result.top1["val"] > 0.4  # chance: 0.1
    # Training costs about 3 forward passes per image and epoch; evaluation 1 per image.
    forward = finetune_module._flops(nn.Sequential(result.encoder, result.classifier), 1, 1, 8, backward=False)
    trained = 640 * SETTINGS.epochs
    evaluated = 200 + len(digits.test_images)
    assert 2.5 * trained * forward + evaluated * forward < result.flops < 3.5 * trained * forward + evaluated * forward


def test_three_stages_get_the_fourth_back_warmed_up_alone_then_everything_is_tuned(
    digits: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    phases: list[tuple[int, set[str]]] = []
    original = finetune_module._Trainer.run

    def spy(self: finetune_module._Trainer, epochs: int, lr: float) -> float:
        phases.append((epochs, {name for name, p in self.model.named_parameters() if p.requires_grad}))
        return original(self, epochs, lr)

    monkeypatch.setattr(finetune_module._Trainer, "run", spy)
    result = run(digits, stages=3)
    assert len(result.encoder.stages) == 4 and result.encoder.feature_dim == 64
    assert result.classifier.in_features == 64
    assert result.top1["test"] > 0.4
    (warm_epochs, warm), (tune_epochs, tuned) = phases
    assert warm_epochs == 1 and tune_epochs == SETTINGS.epochs
    assert warm and all(name.startswith(("0.stages.3.", "1.")) for name in warm)  # the new stage and the classifier
    assert any(name.startswith("1.") for name in warm) and any(name.startswith("0.stages.3.") for name in warm)
    assert tuned == {name for name, _ in nn.Sequential(result.encoder, result.classifier).named_parameters()}


def test_with_all_stages_keeps_the_pretrained_ones() -> None:
    three = encoder(stages=3)
    torch.manual_seed(5)
    full, present = with_all_stages(three, BackboneConfig(depth=10, width=0.125, stages=3))
    assert present == 3 and len(full.stages) == 4
    for key, value in three.state_dict().items():
        assert torch.equal(full.state_dict()[key], value), key
    assert full(torch.randn(2, 1, 8, 8)).shape == (2, 64)
    with pytest.raises(ValueError, match="does not match"):
        with_all_stages(three, BackboneConfig(depth=18, width=0.125, stages=3))


def test_finetuning_is_deterministic_given_a_seed(digits: ImageDataset) -> None:
    small = ImageDataset(
        name="digits-small",
        train_images=digits.train_images[:456],  # 256 training images after the 200 of validation
        train_labels=digits.train_labels[:456],
        test_images=digits.test_images[:100],
        test_labels=digits.test_labels[:100],
        classes=digits.classes,
    )
    first, again, other = run(small, 3, seed=1, global_seed=10), run(small, 3, seed=1, global_seed=11), run(small, 3, seed=2)
    assert first.top1 == again.top1
    for a, b in zip(first.encoder.parameters(), again.encoder.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first.encoder.parameters(), other.encoder.parameters()))


class _StopAtFirstConv(Exception):
    pass


def _first_conv_layouts(call) -> tuple[bool, bool]:
    """(input channels_last, weight channels_last) at the first real training convolution of
    `call`, stopped before that convolution runs (channels_last convolutions are not run on the CPU)."""
    seen = []

    def pre_hook(module, inputs):
        if isinstance(module, nn.Conv2d) and module.training and inputs[0].device.type != "meta":  # not the FLOP counter's
            seen.append((inputs[0].is_contiguous(memory_format=torch.channels_last),
                         module.weight.is_contiguous(memory_format=torch.channels_last)))
            raise _StopAtFirstConv

    handle = torch.nn.modules.module.register_module_forward_pre_hook(pre_hook)
    try:
        with pytest.raises(_StopAtFirstConv):
            call()
    finally:
        handle.remove()
    return seen[0]


def test_fine_tuning_and_bn_recalibration_use_the_trainers_memory_format(monkeypatch) -> None:
    """On CUDA the trainer runs channels_last (`conv_memory_format`); fine-tuning and BN
    recalibration must follow the same rule. Asked for channels_last here on the CPU, their first
    convolution (3 input channels: a 1-channel tensor is channels_last either way) must see it."""
    monkeypatch.setattr(finetune_module, "conv_memory_format", lambda device: torch.channels_last)
    images = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8)
    labels = torch.arange(64) % 4
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    torch.manual_seed(0)
    net = build_resnet(10, 0.125, 4, 3, "cifar")
    tune = lambda: finetune(net, BackboneConfig(depth=10, width=0.125), images, labels, {}, SETTINGS, resolution=8,  # noqa: E731
                            mean=mean, std=std, num_classes=4, device=CPU, seed=0, batch_size=32)
    assert _first_conv_layouts(tune) == (True, True)
    assert _first_conv_layouts(lambda: recalibrate_bn(net, images, 8, mean, std, CPU, num_images=32, batch_size=32))[0]
