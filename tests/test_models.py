"""Model shapes, parameter counts and input validation."""
import pytest
import torch

from lcnn_core.models import VARIANTS, resnet18, small_cnn


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("width", [4, 64])
def test_resnet18_output_shape(variant, width):
    model = resnet18(variant, num_classes=100, width=width)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    model.eval()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("variant", VARIANTS)
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
