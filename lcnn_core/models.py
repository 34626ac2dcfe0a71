"""ResNet-18 for CIFAR and a small CNN, in the paper's three flavours (STUDY.md §1).

Variants:

* ``"standard"`` -- plain bias-free convs, plain batch norm, softplus beta=1000;
* ``"lcnn"``     -- spectrally normalised convs (true operator norm), clipped
  batch norm (learnable gamma), centered softplus (learnable beta);
* ``"softplus"`` -- as standard with softplus beta=10 (the paper's
  "Softplus + Wt. Decay" row);
* ``"centered_softplus"``, ``"sn_conv"``, ``"clipped_bn"`` -- standard with ONE LCNN
  component swapped in (centered softplus with learnable beta; spectrally normalised
  convs; clipped batch norm), to ask which component lowers the curvature.

The final linear layer is spectrally normalised in every variant. Models are
``nn.Sequential`` all the way down (a residual block is a ``Residual`` of two
``nn.Sequential`` branches), which is the structure ``lcnn_core.bound`` composes.
Input: N x C x H x W in [0, 1]; output: N x num_classes logits.
"""
from torch import nn

from .layers import (CenteredSoftplus, ClippedBatchNorm2d, Conv2d, GlobalAvgPool, SNConv2d,
                     SNLinear, Softplus)

STANDARD_BETA = 1000.0
SOFTPLUS_BETA = 10.0
# variant -> (spectrally normalised convs, clipped batch norm, activation: "centered" or a fixed beta)
COMPONENTS = {
    "standard":          (False, False, STANDARD_BETA),
    "lcnn":              (True,  True,  "centered"),
    "softplus":          (False, False, SOFTPLUS_BETA),
    "centered_softplus": (False, False, "centered"),
    "sn_conv":           (True,  False, STANDARD_BETA),
    "clipped_bn":        (False, True,  STANDARD_BETA),
}
VARIANTS = tuple(COMPONENTS)


class Parts:
    """The conv / norm / activation factories of one variant."""

    def __init__(self, variant):
        if variant not in VARIANTS:
            raise ValueError(f"unknown model variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        self.variant = variant
        self.sn_conv, self.clipped_bn, self.activation = COMPONENTS[variant]

    def conv(self, cin, cout, k, input_size, stride=1):
        cls = SNConv2d if self.sn_conv else Conv2d
        return cls(cin, cout, k, input_size=input_size, stride=stride, padding=k // 2)

    def norm(self, c):
        return ClippedBatchNorm2d(c) if self.clipped_bn else nn.BatchNorm2d(c)

    def act(self):
        if self.activation == "centered":
            return CenteredSoftplus()
        return Softplus(beta=self.activation)


class Residual(nn.Module):
    """y = branch(x) + shortcut(x); an empty shortcut is the identity."""

    def __init__(self, branch, shortcut):
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x):
        return self.branch(x) + self.shortcut(x)


def basic_block(parts, cin, cout, stride, size):
    """BasicBlock: act(bn(conv(act(bn(conv(x))))) + shortcut(x)); returns (block, output size)."""
    out = (size[0] + stride - 1) // stride, (size[1] + stride - 1) // stride
    branch = nn.Sequential(
        parts.conv(cin, cout, 3, size, stride), parts.norm(cout), parts.act(),
        parts.conv(cout, cout, 3, out), parts.norm(cout),
    )
    shortcut = nn.Sequential()
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(parts.conv(cin, cout, 1, size, stride), parts.norm(cout))
    return nn.Sequential(Residual(branch, shortcut), parts.act()), out


def _check(num_classes, width, in_channels, input_size):
    for name, v in (("num_classes", num_classes), ("width", width), ("in_channels", in_channels)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"input_size must be a positive int or (H, W), got {input_size!r}")
    return size


def resnet18(variant="standard", num_classes=10, width=64, in_channels=3, input_size=32):
    """CIFAR ResNet-18: 3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2]
    with widths (w, 2w, 4w, 8w), global average pool, spectrally normalised linear.
    width=64 is the paper's 11.2 M-parameter model; smaller widths run on CPU."""
    size = _check(num_classes, width, in_channels, input_size)
    parts = Parts(variant)
    layers = [parts.conv(in_channels, width, 3, size), parts.norm(width), parts.act()]
    cin = width
    for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for j in range(2):
            stride = 2 if (i > 0 and j == 0) else 1
            block, size = basic_block(parts, cin, cout, stride, size)
            layers.append(block)
            cin = cout
    layers += [GlobalAvgPool(size), SNLinear(cin, num_classes)]
    model = nn.Sequential(*layers)
    model.variant = variant
    return model


def small_cnn(variant="standard", num_classes=10, width=16, in_channels=1, input_size=28):
    """A 3-conv CNN for MNIST-sized inputs (and dense-Hessian tests):
    conv(w) -> conv(2w, stride 2) -> conv(4w, stride 2) -> avg pool -> SN linear,
    each conv followed by the variant's norm and activation."""
    size = _check(num_classes, width, in_channels, input_size)
    parts = Parts(variant)
    layers, cin = [], in_channels
    for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
        layers += [parts.conv(cin, cout, 3, size, stride), parts.norm(cout), parts.act()]
        size = (size[0] + stride - 1) // stride, (size[1] + stride - 1) // stride
        cin = cout
    layers += [GlobalAvgPool(size), SNLinear(cin, num_classes)]
    model = nn.Sequential(*layers)
    model.variant = variant
    return model


ARCHITECTURES = {"resnet18": resnet18, "small_cnn": small_cnn}


def build_model(arch, variant, num_classes, width, in_channels, input_size):
    """Model by name (``arch`` in ARCHITECTURES)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](variant, num_classes=num_classes, width=width,
                               in_channels=in_channels, input_size=input_size)


def m1(num_classes=10, in_channels=1, input_size=28, channels=(20, 50), hidden=500):
    """Yao et al. (2018) M1 for MNIST, Conv(5,5,20)-Conv(5,5,50)-FC(500)-SM(10), with ReLU
    and 2x2 max-pooling after each conv (LeNet style; 'same' padding, stride 1, biases),
    plain (not spectrally normalised) layers. Returns logits; the softmax is in the loss.
    in_channels=3, input_size=32 gives the same small CNN for CIFAR-10."""
    size = _check(num_classes, hidden, in_channels, input_size)
    c1, c2 = channels
    h, w = size[0] // 4, size[1] // 4
    model = nn.Sequential(
        nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
    )
    model.variant = "m1"
    return model
