"""Model factories. Every model takes (in_channels, image_size, num_classes) and adapts to them.

- tiny_cnn: three conv-BN-ReLU blocks for 8x8 digits (the interactive default, ~0.6 M MACs).
- mlp: two hidden layers; no convolutions (unstructured methods only).
- lenet5: LeCun et al. 1998, with padding so it also fits 8x8 inputs.
- resnet20/32/56/110: CIFAR ResNets of He et al. 2016 (sec. 4.2), 3 stages of 16/32/64 filters.
  Shortcuts use **option B** (1x1 conv + BN projection) on the two downsampling blocks and
  identity elsewhere: projections make each stage's residual channels a self-contained group, so
  filters can be physically removed. They add 0.26 M MACs (ResNet-20: 40.8 M vs 40.6 M with the
  parameter-free option A the papers' FLOPs tables assume).
- vgg11/16/19: VGG with BatchNorm, CIFAR variant (one linear classifier on 512 features); pools
  that would shrink the map below 1x1 are skipped, so it also runs on 8x8 inputs.
- resnet18/34/50: torchvision ImageNet models; stem and classifier adapted; weights download only
  with pretrained=True.
- vit_tiny, gpt_tiny: small transformers in nanoGPT's layout (pruneviz/transformers.py); a text
  dataset's input shape is (context,), which reaches a factory as in_channels 0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn

from .config import ConfigError
from .transformers import TEXT_MODELS, gpt_tiny, vit_tiny


class TinyCNN(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2) if image_size >= 4 else nn.Identity()
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))


class MLP(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class LeNet5(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=2 if image_size < 16 else 0)
        self.pool = nn.MaxPool2d(2)
        side = image_size // 2
        side = (side if image_size < 16 else side - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        assert (depth - 2) % 6 == 0, depth
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes, layers = 16, []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(planes, width, stride if i == 0 else 1))
                planes = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, depth: int, in_channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, side = in_channels, image_size
        for v in VGG_CFG[depth]:
            if v == "M":
                if side >= 2:
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
                continue
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                       nn.ReLU(inplace=True)]
            c = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _torchvision(name: str, in_channels: int, image_size: int, num_classes: int,
                 pretrained: bool = False) -> nn.Module:
    import torchvision.models as tvm

    model = getattr(tvm, name)(weights="DEFAULT" if pretrained else None)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                                old.padding, bias=False)
    if num_classes != model.fc.out_features:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


# name -> factory(in_channels, image_size, num_classes)
MODELS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "tiny_cnn": TinyCNN,
    "mlp": MLP,
    "lenet5": LeNet5,
    **{f"resnet{d}": partial(CifarResNet, d) for d in (20, 32, 56, 110)},
    **{f"vgg{d}": partial(VGG, d) for d in (11, 16, 19)},
    **{name: partial(_torchvision, name) for name in ("resnet18", "resnet34", "resnet50")},
    "vit_tiny": vit_tiny,
    "gpt_tiny": gpt_tiny,
}
TORCHVISION = ("resnet18", "resnet34", "resnet50")


def check_model_name(name: str) -> None:
    """ConfigError unless `name` is a built-in model (modelspec.check_model_name takes any
    spec: torchvision:NAME, MODULE:FACTORY, PATH.py:FACTORY)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; use one of {', '.join(MODELS)}, or a "
                          f"model spec (torchvision:NAME, MODULE:FACTORY, PATH.py:FACTORY).")


def model_modality(name: str) -> str:
    """"text" for language models (token ids in), "image" for the rest."""
    return "text" if name in TEXT_MODELS else "image"


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, *,
                pretrained: bool = False) -> nn.Module:
    """Build the built-in model `name` for inputs of shape (C, H, W) (text: (context,)) and
    `num_classes` outputs (text: the vocabulary); modelspec.build_model builds any spec."""
    check_model_name(name)
    if len(input_shape) == 1:       # token ids: no channels; the side is the context length
        input_shape = (0, input_shape[0], input_shape[0])
    c, h, _ = input_shape
    if not c and name not in TEXT_MODELS:
        raise ConfigError(f"{name} classifies images, but the dataset is text; pick a language "
                          f"model ({', '.join(TEXT_MODELS)}) or an image dataset.")
    if pretrained:
        if name not in TORCHVISION:
            raise ConfigError(f"pretrained weights exist only for {', '.join(TORCHVISION)} "
                              f"and torchvision:NAME models.")
        return _torchvision(name, c, h, num_classes, pretrained=True)
    return MODELS[name](c, h, num_classes)
