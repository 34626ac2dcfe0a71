"""Model shapes, parameter counts and input validation."""
import pytest
import torch

from lcnn_core.models import VARIANTS, resnet18, small_cnn


# width 64 with spectrally normalised convs takes minutes on a shared CPU: lcnn covers it
WIDE = [("standard", 64), ("lcnn", 64), ("softplus", 64)] + [(v, 4) for v in VARIANTS]


@pytest.mark.parametrize("variant,width", WIDE)
def test_resnet18_output_shape(variant, width):
    model = resnet18(variant, num_classes=100, width=width)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    model.eval()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "sn_conv"])
def test_resnet18_width64_has_the_known_11_2M_parameters(variant):
    n = sum(p.numel() for p in resnet18(variant, num_classes=10).parameters())
    assert abs(n - 11.17e6) < 0.02e6, n


@pytest.mark.parametrize("variant", VARIANTS)
def test_small_cnn_on_mnist_sized_inputs(variant):
    assert small_cnn(variant, width=8)(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_unknown_variant_names_the_allowed_ones():
    with pytest.raises(ValueError, match="standard, lcnn, softplus"):
        resnet18("relu")


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(width=-8), dict(num_classes=0), dict(in_channels=0)])
def test_non_positive_sizes_are_refused(kwargs):
    with pytest.raises(ValueError, match="positive"):
        resnet18("lcnn", **kwargs)


def test_lcnn_model_refuses_an_input_size_it_was_not_built_for():
    model = resnet18("lcnn", width=4, input_size=32)
    with pytest.raises(ValueError, match="built for inputs of size"):
        model(torch.rand(1, 3, 28, 28))


def _layer_counts(model):
    from torch import nn
    from lcnn_core.layers import CenteredSoftplus, ClippedBatchNorm2d, Conv2d, SNConv2d, Softplus
    kinds = {"sn_conv": SNConv2d, "conv": Conv2d, "clipped_bn": ClippedBatchNorm2d,
             "centered": CenteredSoftplus, "softplus": Softplus}
    counts = {k: sum(type(m) is cls for m in model.modules()) for k, cls in kinds.items()}
    counts["bn"] = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    counts["betas"] = sorted({m.beta for m in model.modules() if type(m) is Softplus})
    return counts


# every training variant -> (SN convs?, clipped BN?, activation: "centered" or fixed beta)
INTENDED = {
    "standard": (False, False, 1000.0), "lcnn": (True, True, "centered"), "gradreg": (False, False, 1000.0),
    "lcnn_gradreg": (True, True, "centered"), "cure": (False, False, 1000.0),
    "softplus_wd": (False, False, 10.0), "adv": (False, False, 1000.0),
    "lcnn_nopen": (True, True, "centered"), "csoftplus": (False, False, "centered"),
    "snconv": (True, False, 1000.0), "clipbn": (False, True, 1000.0),
}


@pytest.mark.parametrize("arch", ["resnet18", "small_cnn"])
@pytest.mark.parametrize("training_variant", list(INTENDED))
def test_every_training_variant_builds_exactly_the_intended_layers(arch, training_variant):
    from lcnn_core.config import TRAINING_VARIANTS, resolve
    from lcnn_core.train import model_for_shape
    assert set(INTENDED) == set(TRAINING_VARIANTS)
    cfg = resolve(dict(arch=arch, width=2, variant=training_variant))
    model = model_for_shape(cfg, (3, 16, 16), 10)
    c = _layer_counts(model)
    n_conv = {"resnet18": 20, "small_cnn": 3}[arch]    # stem + 16 block convs + 3 shortcuts
    n_norm, n_act = n_conv, {"resnet18": 17, "small_cnn": 3}[arch]
    sn, clip, act = INTENDED[training_variant]
    assert (c["sn_conv"], c["conv"]) == ((n_conv, 0) if sn else (0, n_conv))
    assert (c["clipped_bn"], c["bn"]) == ((n_norm, 0) if clip else (0, n_norm))
    if act == "centered":
        assert (c["centered"], c["softplus"]) == (n_act, 0)
    else:
        assert (c["centered"], c["softplus"], c["betas"]) == (0, n_act, [act])


def test_lcnn_without_penalty_equals_lcnn_at_lambda_zero(tmp_path):
    from lcnn_core.train import train
    tiny = dict(dataset="mnist5k", n_train=64, n_test=20, arch="small_cnn", width=3, epochs=1, batch_size=32,
                augment=False)
    a = train(dict(tiny, variant="lcnn_nopen"), out=tmp_path, progress=False)
    b = train(dict(tiny, variant="lcnn", lam_beta=0.0, lam_gamma=0.0), out=tmp_path, progress=False)
    wa, wb = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
