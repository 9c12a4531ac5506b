"""Model registry: exact parameter counts of the PyTorch originals, shapes, receptive field, precision, I/O."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from colorgan import models, saving
from colorgan.errors import ColorganError


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_unet_matches_pytorch_pix2pix_parameter_count_and_structure():
    g = models.build_generator("unet", image_size=256)
    assert trainable_count(g) == 54_409_858  # pix2pix UnetGenerator(1, 2, 8, ngf=64, BatchNorm2d)
    assert g.input_shape == (None, 256, 256, 1) and g.output_shape == (None, 256, 256, 2)
    dropouts = [l for l in g.layers if isinstance(l, keras.layers.Dropout)]
    assert len(dropouts) == 3 and all(l.rate == 0.5 for l in dropouts)
    convs = [l for l in g.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    # Only the outermost transposed conv has a bias; every other conv feeds BatchNorm or is outermost-down.
    assert [l.name for l in convs if l.use_bias] == ["up0_conv"]
    assert all(l.kernel_size == (4, 4) and l.strides == (2, 2) for l in convs)
    assert len([l for l in convs if isinstance(l, keras.layers.Conv2DTranspose)]) == 8


def test_patchgan_matches_pytorch_parameter_count_and_output_grid():
    c = models.build_critic("patchgan", image_size=256, in_channels=3)
    assert trainable_count(c) == 2_765_633  # NLayerDiscriminator(3, 64, n_layers=3, BatchNorm2d)
    assert c.output_shape == (None, 30, 30, 1)


def test_patchgan_receptive_field_is_70x70():
    c = models.build_critic("patchgan", image_size=128, in_channels=3, norm="none")
    x = tf.Variable(tf.random.normal([1, 128, 128, 3]))
    with tf.GradientTape() as tape:
        out = c(x)
        centre = out[0, out.shape[1] // 2, out.shape[2] // 2, 0]
    grad = tf.reduce_sum(tf.abs(tape.gradient(centre, x)), axis=[0, 3]).numpy()
    rows, cols = np.nonzero(grad.sum(1))[0], np.nonzero(grad.sum(0))[0]
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


@pytest.mark.parametrize("name,options", [
    ("unet", dict(base_filters=8, depth=5)),
    ("resunet", dict(width=8, depth=3, blocks=1, norm="instance", upsampling="transpose")),
    ("resunet", dict(width=8, depth=3, blocks=1, norm="layer", upsampling="resize")),
    ("backbone:mobilenet_v2", dict(encoder_weights="none", decoder_filters=(16, 16, 8, 8, 8))),
])
def test_generators_are_conditioned_on_l_and_learn_a_colour(name, options):
    """Each generator's ab depends on its L input, and a few steps of L1 fit a known colour rule
    (a = L / 2, b = -L / 4): a net that ignored L, or broke its gradients, cannot."""
    g = models.build_generator(name, image_size=64, **options)
    rng = np.random.default_rng(0)
    l = tf.constant(rng.uniform(-1, 1, (4, 64, 64, 1)), tf.float32)
    l = tf.constant(np.repeat(np.repeat(l.numpy()[:, ::8, ::8], 8, 1), 8, 2))  # smooth blocks
    assert float(tf.reduce_mean(tf.abs(g(l) - g(-l)))) > 0
    target = tf.concat([l / 2, -l / 4], axis=-1)
    opt = keras.optimizers.Adam(3e-3)

    @tf.function  # one trace, not 30 eager passes through every layer
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(g(l, training=True) - target))
        opt.apply(tape.gradient(loss, g.trainable_variables), g.trainable_variables)
        return loss

    losses = [float(step()) for _ in range(30)]
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize("backbone", ["resnet50", "efficientnet_b0"])
def test_other_backbones_build_offline(backbone):
    g = models.build_generator(f"backbone:{backbone}", image_size=64, encoder_weights="none")
    assert g(tf.zeros([1, 64, 64, 1])).shape == (1, 64, 64, 2)
    assert g.get_layer("encoder") is not None


def test_backbone_freeze_option_and_offline_imagenet_message(tmp_path):
    g = models.build_generator("backbone:mobilenet_v2", image_size=64, encoder_weights="none", freeze_encoder=True)
    assert not g.get_layer("encoder").trainable
    assert trainable_count(g) < trainable_count(models.build_generator(
        "backbone:mobilenet_v2", image_size=64, encoder_weights="none"))
    with pytest.raises(ColorganError, match="does not exist"):
        models.build_generator("backbone:mobilenet_v2", image_size=64, encoder_weights=str(tmp_path / "no.h5"))


def test_resunet_default_size():
    g = models.build_generator("resunet", image_size=256)
    assert trainable_count(g) == 19_840_642


@pytest.mark.parametrize("name,options,size,smallest", [
    ("unet", {}, 100, "256"), ("unet", dict(depth=5), 48, "32"), ("resunet", dict(depth=5), 40, "16"), ("resunet", {}, 48, "32"),
    ("backbone:mobilenet_v2", dict(encoder_weights="none"), 48, "32"),
])
def test_a_size_that_does_not_fit_names_the_smallest_that_does(name, options, size, smallest):
    with pytest.raises(ColorganError, match=f"smallest {smallest}"):
        models.build_generator(name, image_size=size, **options)


def test_patchgan_size_error():
    with pytest.raises(ColorganError, match="smallest 8"):
        models.build_critic("patchgan", image_size=12)


@pytest.mark.parametrize("kind,name", [("generator", "pix2pixhd"), ("critic", "stylegan")])
def test_unknown_names_list_the_choices(kind, name):
    build = models.build_generator if kind == "generator" else models.build_critic
    with pytest.raises(ColorganError, match="use one of"):
        build(name, image_size=64)


def test_bad_option_is_a_user_error():
    with pytest.raises(ColorganError, match="bad option"):
        models.build_generator("unet", image_size=64, filterz=3)


def test_weights_start_from_pix2pix_initialisation():
    g = models.build_generator("unet", image_size=256, base_filters=32)
    kernels = np.concatenate([l.kernel.numpy().ravel() for l in g.layers if hasattr(l, "kernel")])
    gammas = np.concatenate([l.gamma.numpy().ravel() for l in g.layers if isinstance(l, keras.layers.BatchNormalization)])
    assert abs(kernels.mean()) < 1e-3 and abs(kernels.std() - 0.02) < 1e-3
    assert abs(gammas.mean() - 1.0) < 3e-3 and abs(gammas.std() - 0.02) < 3e-3


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_models_run_under_mixed_precision_with_float32_outputs(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    for model in (models.build_generator("unet", image_size=32, base_filters=8, depth=5),
                  models.build_generator("resunet", image_size=32, width=8, depth=3, blocks=1),
                  models.build_generator("backbone:mobilenet_v2", image_size=32, encoder_weights="none"),
                  models.build_critic("patchgan", image_size=32, base_filters=8),
                  models.build_critic("projected", image_size=32, filters=8)):
        x = tf.random.uniform([2, 32, 32, model.input_shape[-1]], -1, 1)
        y = model(x, training=True)
        assert y.dtype == tf.float32, model.name
        assert np.isfinite(y.numpy()).all(), model.name
        convs = [l for l in all_layers(model) if isinstance(l, keras.layers.Conv2D)]
        if model.name == "projected" and policy == "mixed_float16":
            # its spectrally normalised heads compute in float32: float16 underflows in the power iteration
            heads = [l for l in convs if l.name.startswith("head")]
            assert heads and {l.compute_dtype for l in heads} == {"float32"}
            convs = [l for l in convs if l not in heads]
        assert {l.compute_dtype for l in convs} == {policy.split("_")[1]}, model.name


def all_layers(model):
    """Every layer, inside nested models and wrappers (spectral norm) too."""
    for layer in model.layers:
        yield layer
        yield from all_layers(layer) if isinstance(layer, keras.Model) else ()
        if isinstance(layer, keras.layers.Wrapper):
            yield layer.layer


@pytest.mark.parametrize("build", [
    lambda: models.build_generator("unet", image_size=32, base_filters=8, depth=5),
    lambda: models.build_generator("resunet", image_size=32, width=8, depth=3, blocks=1, norm="instance"),
    lambda: models.build_generator("backbone:mobilenet_v2", image_size=32, encoder_weights="none"),
    lambda: models.build_critic("patchgan", image_size=32, base_filters=8, spectral_norm=True, norm="layer"),
    lambda: models.build_critic("projected", image_size=32, filters=8, strides="8/16"),
])
def test_save_and_reload_gives_identical_outputs(tmp_path, build):
    model = build()
    x = tf.random.uniform([2, *model.input_shape[1:]], -1, 1)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model(x, training=False).numpy(), reloaded(x, training=False).numpy())


def test_load_generator_from_a_keras_file(tmp_path):
    g = models.build_generator("unet", image_size=32, base_filters=8, depth=5)
    g.save(str(tmp_path / "g.keras"))
    loaded, size = saving.load_generator(str(tmp_path / "g.keras"))
    assert size == 32
    with pytest.raises(ColorganError, match="not a colorgan run"):
        saving.load_generator(str(tmp_path))


def train_once(layer, x):
    """One training-mode call: the output, the gradients of a non-linear loss, the layer's moving stats."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.sin(tf.cast(y, tf.float32)))
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return [tf.cast(t, tf.float32).numpy() for t in (y, *grads, *layer.non_trainable_weights)]


@pytest.mark.parametrize("policy,tolerance", [("float32", 1e-4), ("mixed_bfloat16", 5e-2)])
def test_fused_batch_norm_trains_exactly_as_keras_batch_norm(policy, tolerance):
    keras.mixed_precision.set_dtype_policy(policy)
    x = tf.cast(tf.random.stateless_normal([4, 8, 8, 5], seed=[1, 2]) * 3 + 1, keras.mixed_precision.dtype_policy().compute_dtype)
    keras_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    fused_bn = models.blocks.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (keras_bn, fused_bn):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 5))
        layer.beta.assign(np.linspace(-1.0, 1.0, 5))
    expected, got = train_once(keras_bn, x), train_once(fused_bn, x)
    # output, d/dx, d/dgamma, d/dbeta, moving mean, moving (biased) variance
    for name, e, g in zip(["y", "dx", "dgamma", "dbeta", "moving_mean", "moving_variance"], expected, got):
        np.testing.assert_allclose(g, e, rtol=tolerance, atol=tolerance, err_msg=name)
    assert fused_bn.moving_variance.numpy()[0] != 1.0  # the statistics did move
    np.testing.assert_allclose(fused_bn(x, training=False), keras_bn(x, training=False), rtol=1e-6, atol=1e-6)


def test_leaky_relu_equals_keras_in_values_and_gradients():
    x = tf.constant(np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4, 1))
    ours, theirs = models.blocks.LeakyReLU(0.2), keras.layers.LeakyReLU(0.2)
    for training in (True, False):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y_ours, y_theirs = ours(x, training=training), theirs(x)
        np.testing.assert_array_equal(y_ours, y_theirs)
        np.testing.assert_array_equal(tape.gradient(y_ours * x, x), tape.gradient(y_theirs * x, x))


def test_the_gan_step_keeps_grappler_remapper_fusions(capfd):
    """Keras's LeakyReLU after a biased conv made grappler's remapper fail and drop all its fusions."""
    g = models.build_generator("unet", image_size=32, base_filters=8, depth=5)
    c = models.build_critic("patchgan", image_size=32, base_filters=8)
    variables = g.trainable_weights + c.trainable_weights

    @tf.function
    def step(l):
        with tf.GradientTape() as tape:
            logits = c(tf.concat([l, g(l, training=True) * 0 + 0.1], -1), training=True)
            loss = tf.reduce_mean(tf.square(logits))
        return tape.gradient(loss, variables)

    grads = step(tf.random.uniform([2, 32, 32, 1], -1, 1))
    assert all(gr is not None for gr in grads)
    assert "remapper failed" not in capfd.readouterr().err


def test_the_fused_layers_keep_keras_automatic_names():
    # A --ema checkpoint stores its averages by weight path, which holds unnamed layers' automatic names.
    def prefix(layer):
        return layer.name.rstrip("_0123456789")
    assert prefix(models.blocks.BatchNormalization()) == prefix(keras.layers.BatchNormalization()) == "batch_normalization"
    assert prefix(models.blocks.LeakyReLU()) == prefix(keras.layers.LeakyReLU()) == "leaky_re_lu"


def test_projected_critic_judges_the_photo_the_lab_stands_for_and_trains_only_its_heads():
    """Its RGB is skimage's lab2rgb of the Lab it is given; the ImageNet features stay frozen (weights and
    batch-norm statistics) while a critic step moves the heads; the coarse scales repeat over their cells;
    and the generator gets a gradient through it."""
    from skimage import color as skcolor

    from colorgan.models.projected import LabToEncoderRGB
    rgb = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3))
    lab = skcolor.rgb2lab(rgb)
    model_lab = np.concatenate([lab[..., :1] / 50 - 1, lab[..., 1:] / 110], -1).astype(np.float32)
    np.testing.assert_allclose(LabToEncoderRGB()(model_lab).numpy(), (rgb * 255 - 127) / 128, atol=2e-3)

    c = models.build_critic("projected", image_size=64, in_channels=3, filters=8)
    features = c.get_layer("features")
    assert not features.trainable_weights and features.non_trainable_weights
    frozen = [w.numpy().copy() for w in features.weights]
    x = tf.random.uniform([4, 64, 64, 3], -1, 1)
    out = c(x, training=True).numpy()
    assert out.shape == (4, 16, 16, 3)  # strides 4, 8, 16 on the stride-4 grid
    np.testing.assert_array_equal(out[:, ::4, ::4, 2], out[:, 3::4, 3::4, 2])
    assert not np.array_equal(out[:, 0, 0, 0], out[:, 0, 1, 0])

    heads = [w.numpy().copy() for w in c.trainable_weights]
    opt = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(c(x, training=True) - 1.0))
    opt.apply(tape.gradient(loss, c.trainable_weights), c.trainable_weights)
    for before, w in zip(frozen, features.weights):
        np.testing.assert_array_equal(before, w.numpy())
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(heads, c.trainable_weights) if "kernel" in w.path)

    ab = tf.Variable(x[..., 1:])
    with tf.GradientTape() as tape:
        score = tf.reduce_mean(c(tf.concat([x[..., :1], ab], -1), training=False))
    assert float(tf.reduce_max(tf.abs(tape.gradient(score, ab)))) > 0


@pytest.mark.parametrize("options", [dict(strides="3/8"), dict(strides="x"), dict(in_channels=1)])
def test_projected_critic_refuses_bad_options_with_the_choices(options):
    with pytest.raises(ColorganError, match="strides must be some of 2/4/8/16/32|in_channels must be 3"):
        models.build_critic("projected", image_size=64, **options)
