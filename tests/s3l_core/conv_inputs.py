"""A recorder of what every convolution is fed during a block, for the trainer's layout tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ConvCall:
    training: bool  # the module's mode: a training step, or an evaluation pass
    dtype: torch.dtype
    channels_last: bool
    output_dtype: torch.dtype


class ConvInputs:
    """Records every Conv2d call on `device_type` whose input has more than one channel (a
    one-channel NCHW tensor is channels_last too: no evidence either way). The FLOP counter's
    forward runs on the meta device and is not recorded."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.seen: list[ConvCall] = []

    def __enter__(self) -> ConvInputs:
        def hook(module, inputs, output):
            x = inputs[0]
            if isinstance(module, torch.nn.Conv2d) and x.device.type == self.device_type and x.shape[1] > 1:
                self.seen.append(ConvCall(module.training, x.dtype, x.is_contiguous(memory_format=torch.channels_last), output.dtype))

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()
