"""benchmarks/torch_lite0.py is colorgan's lite0_patchgan set-up in PyTorch: the same parameter counts as the
Keras models, and with their weights copied in, the same outputs. Also the PyTorch train step's _compile
mode against its eager one. Needs torch (the `bench` or `parity` extra); skipped without it."""
import os
import sys

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import cases  # noqa: E402
import torch_lite0  # noqa: E402
from torch_reference import Pix2Pix, count_parameters  # noqa: E402

from colorgan import models  # noqa: E402
from colorgan.training import parse_options  # noqa: E402


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_dtype_policy("float32")  # whatever a test before this one left
    yield


def keras_models(image_size):
    """The lite0_patchgan set-up's Keras generator and critic, as the benchmark builds them."""
    setup = cases.TRAIN_MODELS["lite0_patchgan"]
    g = models.build_generator(setup["generator"], image_size, **parse_options(setup["generator_options"]))
    d = models.build_critic(setup["critic"], image_size, in_channels=3, **parse_options(setup["critic_options"]))
    return g, d


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_parameter_counts_equal_keras():
    """Keras's trainable weights are PyTorch's parameters (convs, biases, batch norm gamma and beta); its
    non-trainable ones are the batch norms' running means and variances (PyTorch's buffers, less its
    num_batches_tracked counters). Counts do not depend on the size; 128 px as the issue quotes them."""
    g, d = keras_models(128)
    _, _, options = cases.TORCH_TWINS["lite0_patchgan"]
    twin = torch_lite0.Lite0PatchGAN(128, **dict(options, encoder_weights="none"))
    assert count(g.trainable_weights) == count_parameters(twin.generator) == 9_432_642
    assert count(d.trainable_weights) == count_parameters(twin.critic) == 694_689
    assert count(g.non_trainable_weights) == torch_lite0.count_running_statistics(twin.generator) == 43_936
    assert count(d.non_trainable_weights) == torch_lite0.count_running_statistics(twin.critic) == 896


def keras_layers(model):
    """The layers of a Keras model in the order they run, nested models (the encoder) opened up."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from keras_layers(layer)
        else:
            yield layer


def copy_keras_weights(keras_model, module):
    """Every Keras conv and batch norm into the PyTorch module's, which registers them in the order Keras
    runs them. A layer that does not line up fails on its shape."""
    theirs = [layer for layer in keras_layers(keras_model) if layer.weights]
    ours = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    assert len(theirs) == len(ours)
    with torch.no_grad():
        for layer, m in zip(theirs, ours):
            values = [torch.from_numpy(np.asarray(w.numpy())) for w in layer.weights]
            if isinstance(m, torch.nn.BatchNorm2d):  # gamma, beta, moving mean, moving variance
                targets = [m.weight, m.bias, m.running_mean, m.running_var]
            else:
                # HWIO -> OIHW; a depthwise kernel is (H, W, C, 1) -> (C, 1, H, W)
                depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
                values[0] = values[0].permute((2, 3, 0, 1) if depthwise else (3, 2, 0, 1))
                targets = [m.weight] + ([m.bias] if m.bias is not None else [])
            assert len(values) == len(targets), layer.name
            for target, value in zip(targets, values):
                assert target.shape == value.shape, (layer.name, target.shape, value.shape)
                target.copy_(value)


def randomise_batch_norms(model, rng):
    """Batch norms that are not the identity, so that a swapped mean and variance or a wrong epsilon
    shows. ImageNet gave the encoder's their statistics; the decoder's and the critic's start at 0 and 1."""
    for layer in keras_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.name.startswith(("stem", "block", "top")):
            channels = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.5, channels),
                               rng.normal(0, 0.5, channels), rng.uniform(0.5, 2.0, channels)])


# float32's unit roundoff, and test_efficientnet_lite.py's LAMBDA: a sum of K products rounded in float32 is
# off by at most LAMBDA * sqrt(K) * U times the size of its terms, except with probability 2 exp(-LAMBDA^2 / 2)
# (Higham and Mary, SIAM J. Sci. Comput. 2019): 3e-14 a value for LAMBDA = 8.
U = 2.0 ** -24
LAMBDA = 8.0


def assert_same_network(keras_model, module, x_nhwc):
    """Eval-mode outputs of the Keras model and the PyTorch module, both in float32, each within float32's
    rounding error of the exact values (the PyTorch module run in float64), so within twice that of each
    other. The error: LAMBDA * sqrt(K) * U times the outputs' size, K the products summed from the input
    to an output (every conv's fan-in: all of them lie on the deepest path, the U-Net's skips branch off
    it). The errors each layer makes are relative to its values, which batch norm keeps at one size, so
    they reach the outputs at the outputs' size. A different network (the stride-2 padding on the other
    side, an epsilon of 1e-5 for 1e-3, a missing skip) misses the bound by far."""
    got = keras_model(x_nhwc, training=False).numpy().transpose(0, 3, 1, 2).astype(np.float64)
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()
    module.eval()
    with torch.no_grad():
        ours = module(x).double().numpy()
        exact = module.double()(x.double()).numpy()
    module.float()
    products = sum(m.weight[0].numel() for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    bound = LAMBDA * np.sqrt(products) * U * np.abs(exact).max()
    keras_error, torch_error = np.abs(got - exact).max(), np.abs(ours - exact).max()
    print(f"{type(module).__name__}: outputs up to {np.abs(exact).max():.3g}, {products} products deep; "
          f"off the float64 values: Keras {keras_error:.3g}, PyTorch {torch_error:.3g} (bound {bound:.3g}); "
          f"Keras off PyTorch {np.abs(got - ours).max():.3g}")
    assert keras_error <= bound and torch_error <= bound, (keras_error, torch_error, bound)


def test_generator_and_critic_compute_what_keras_computes():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    g, d = keras_models(64)
    randomise_batch_norms(g, rng)
    randomise_batch_norms(d, rng)
    generator = torch_lite0.Lite0UNet(encoder_weights="none")
    critic = torch_lite0.NLayerDiscriminator(ndf=32)
    copy_keras_weights(g, generator)
    copy_keras_weights(d, critic)
    l = rng.uniform(-1, 1, (2, 64, 64, 1)).astype(np.float32)
    assert_same_network(g, generator, l)
    lab = np.concatenate([l, rng.uniform(-0.5, 0.5, (2, 64, 64, 2)).astype(np.float32)], -1)
    assert_same_network(d, critic, lab)


def test_imagenet_encoder_weights_are_colorgans():
    """The encoder's ImageNet weights, read by torch.load from the package's file, are those colorgan's
    reader put into the Keras encoder (the same file)."""
    g, _ = keras_models(32)
    theirs = [layer for layer in keras_layers(g.get_layer("encoder")) if layer.weights]
    ours = [m for m in torch_lite0.Lite0UNet("imagenet").encoder.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    assert len(theirs) == len(ours)
    for layer, m in zip(theirs, ours):
        if isinstance(m, torch.nn.BatchNorm2d):
            got = [m.weight, m.bias, m.running_mean, m.running_var]
        else:  # OIHW -> HWIO; depthwise (C, 1, H, W) -> (H, W, C, 1)
            got = [m.weight.permute((2, 3, 0, 1) if m.groups > 1 else (2, 3, 1, 0))]
        for want, value in zip(layer.weights, got, strict=True):
            np.testing.assert_array_equal(value.detach().numpy(), want.numpy(), err_msg=layer.name)


def test_train_step_learns():
    torch.manual_seed(0)
    twin = torch_lite0.Lite0PatchGAN(32, encoder_weights="imagenet", lr_encoder=1e-4)
    assert [g["lr"] for g in twin.g_opt.param_groups] == [1e-4, 2e-4]  # the encoder at its own rate
    l, ab = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 2, 32, 32) - 0.5
    first = twin.train_step(l, ab)
    for _ in range(2):
        last = twin.train_step(l, ab)
    assert all(np.isfinite(v) for v in first.values())
    assert last["generator/l1"] < first["generator/l1"]
    assert twin.critic(torch.cat([l, ab], 1)).shape == (2, 1, 2, 2)  # the PatchGAN's grid at 32 px


@pytest.mark.timeout(600)
def test_compiled_step_is_the_eager_step():
    """A _compile mode (torch.compile, fused Adam) takes the same step as eager PyTorch, on the smallest
    pix2pix; where torch.compile cannot run here it runs eager and says why. Compiling takes a minute."""
    l, ab = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 2, 32, 32) - 0.5
    losses = {}
    for mode in ("float32", "float32_compile"):
        torch.manual_seed(0)
        model = Pix2Pix(32, ngf=4, ndf=4, num_downs=5, mode=mode)  # five levels: no dropout
        losses[mode] = [model.train_step(l, ab) for _ in range(2)]
        if mode.endswith("_compile") and model.compile_note:
            assert "ran eager" in model.compile_note
    for eager, compiled in zip(losses["float32"], losses["float32_compile"]):
        for name in eager:
            assert compiled[name] == pytest.approx(eager[name], rel=1e-4), name
