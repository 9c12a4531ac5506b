"""--mixed_precision: the hardware rule, auto's probe and its cache, and float32 depthwise convolutions
inside a bfloat16 model."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from colorgan import models
from colorgan.training import TrainConfig, Trainer, precision

LONG = dict(pretrain_steps=0, train_steps=precision.PROBE_MIN_STEPS)


@pytest.fixture(autouse=True)
def bf16_cpu(monkeypatch, tmp_path):
    """A CPU with bfloat16 units and no GPU, and a cache of its own."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    monkeypatch.setattr(precision.tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setenv("COLORGAN_CACHE_DIR", str(tmp_path / "cache"))


def config(**overrides):
    cfg = dict(data="samples", image_size=32, batch_size=2, generator="backbone:efficientnet_lite0",
               generator_options="encoder_weights=none", critic="patchgan", critic_options="base_filters=8",
               progress=False, export=False)
    return TrainConfig(**dict(cfg, **overrides))


def timings(f32, bf16, bf16_dw):
    return {"float32": f32, "bfloat16": bf16, "bfloat16+depthwise_float32": bf16_dw}


@pytest.mark.parametrize("seconds,chosen", [
    (timings(1.0, 0.9, 0.6), "bfloat16+depthwise_float32"),
    (timings(1.0, 0.5, 0.6), "bfloat16"),
    (timings(1.0, 0.97, 0.96), "float32"),  # under 5% faster: float32's accuracy wins
    (timings(0.8, 0.9, 1.0), "float32"),
])
def test_the_probe_picks_the_fastest_unless_bfloat16_gains_too_little(monkeypatch, seconds, chosen):
    monkeypatch.setattr(precision, "measure", lambda cfg: seconds)
    choice = precision.resolve(config(**LONG))
    assert str(choice) == chosen
    assert f"{min(seconds.values()):.3f} s" in choice.reason


def test_the_answer_is_cached_per_set_up_and_a_damaged_cache_is_measured_again(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(precision, "measure", lambda cfg: calls.append(cfg.image_size) or timings(1.0, 0.9, 0.5))
    assert str(precision.resolve(config(**LONG))) == "bfloat16+depthwise_float32"
    assert str(precision.resolve(config(**LONG))) == "bfloat16+depthwise_float32"
    assert "cached in" in precision.resolve(config(**LONG)).reason
    assert calls == [32]
    precision.resolve(config(image_size=64, **LONG))  # another size is another set-up
    assert calls == [32, 64]
    with open(precision.cache_path(), encoding="utf-8") as f:
        assert len(json.load(f)) == 2
    with open(precision.cache_path(), "w", encoding="utf-8") as f:
        f.write("{not json")
    assert str(precision.resolve(config(**LONG))) == "bfloat16+depthwise_float32"
    assert calls == [32, 64, 32]


def test_no_probe_where_it_cannot_pay_or_cannot_agree(monkeypatch):
    monkeypatch.setattr(precision, "measure", lambda cfg: pytest.fail("probed"))
    short = precision.resolve(config(pretrain_steps=1, train_steps=2))
    assert str(short) == "bfloat16+depthwise_float32" and "too short" in short.reason
    assert str(precision.resolve(config(**LONG), replicas=2)) == "bfloat16+depthwise_float32"
    for asked in ("float32", "bfloat16", "bfloat16+depthwise_float32"):
        assert str(precision.resolve(config(mixed_precision=asked, **LONG))) == asked
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    assert str(precision.resolve(config(**LONG))) == "float32"


def test_a_failed_probe_falls_back_to_the_rule_and_is_not_cached(monkeypatch):
    def failing(cfg):
        raise MemoryError("the child was killed")

    monkeypatch.setattr(precision, "measure", failing)
    choice = precision.resolve(config(**LONG))
    assert str(choice) == "bfloat16+depthwise_float32" and "probe failed" in choice.reason
    assert precision.read_cache() == {}


def test_an_unwritable_cache_only_costs_the_next_probe(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COLORGAN_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(precision, "measure", lambda cfg: timings(1.0, 0.9, 0.5))
    assert str(precision.resolve(config(**LONG))) == "bfloat16+depthwise_float32"


def test_the_probe_times_each_candidate_and_leaves_the_run_untouched():
    """It runs in a child process: the run's layer names (which its checkpoints' averages are keyed by),
    random state and policy are as if it had not run."""
    keras.utils.set_random_seed(7)
    name, draw = keras.layers.Dense(1).name, keras.random.uniform([4])
    keras.utils.set_random_seed(7)
    seconds = precision.measure(config(generator="unet", generator_options="base_filters=8,depth=5"))
    assert sorted(seconds) == sorted(map(str, precision.CANDIDATES))
    assert all(s > 0 for s in seconds.values())
    number = lambda layer_name: int(layer_name.rsplit("_", 1)[1]) if "_" in layer_name else 0
    assert number(keras.layers.Dense(1).name) == number(name) + 1
    np.testing.assert_array_equal(keras.random.uniform([4]), draw)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_depthwise_convolutions_compute_in_float32_inside_a_bfloat16_model():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        generator = models.build_generator("backbone:efficientnet_lite0", 32, encoder_weights="none")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    precision.Precision.named("bfloat16+depthwise_float32").apply(generator)
    layers = [layer for layer in models.all_layers(generator) if layer.weights]
    depthwise = [layer for layer in layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == 16  # EfficientNet-Lite0's MBConv blocks
    assert {layer.compute_dtype for layer in depthwise} == {"float32"}
    assert {layer.compute_dtype for layer in layers if layer not in depthwise} - {"float32"} == {"bfloat16"}
    # Known answer: the layer's output is the float32 depthwise convolution of its input, not a
    # bfloat16 one (which rounds the product to 8 bits of mantissa).
    layer = depthwise[0]
    x = tf.cast(tf.random.stateless_normal([1, 8, 8, layer.kernel.shape[2]], seed=[3, 4]), tf.bfloat16)
    out = layer(x)
    assert out.dtype == tf.float32
    expected = tf.nn.depthwise_conv2d(tf.cast(x, tf.float32), layer.kernel.value, [1, *layer.strides, 1],
                                      layer.padding.upper())
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
