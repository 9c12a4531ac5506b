"""Colour hints (issue #37): the JSON and its errors, a*b* at the photo's own L*, the maps the model sees,
simulated hints for training, the hint branch that starts at zero, and training it."""
import json

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf

from colorgan import color, hints, models, saving
from colorgan.errors import ColorganError

PHOTO = np.full((40, 60, 3), 118, np.uint8)  # mid-gray, 60 wide and 40 high


def lab_of(rgb8):
    return skimage.color.rgb2lab(np.asarray(rgb8, np.uint8).reshape(1, -1, 3))[0]


# --------------------------------------------------------------------------------------------------
# The hints file and its errors


@pytest.mark.parametrize("text,message", [
    ('{"points": [{"x": 1, "y": 2, "color": "#ff0000"}', "not valid JSON (Expecting ',' delimiter at line 1"),
    ("", "not valid JSON (Expecting value at line 1, column 1)"),
    ('[{"x": 1, "y": 2, "color": "#f00"}]', 'expected an object with a "points" list'),
    ('{"points": [{"x": 1, "y": 2, "color": "red"}]}', "point 1: 'red' is not a colour; write it as hex sRGB"),
    ('{"points": [{"x": 1, "y": 2, "color": "#12345"}]}', "'#12345' is not a colour"),
    ('{"points": [{"x": 1, "y": 2, "color": [300, 0, 0]}]}', "[300, 0, 0] is not a colour"),
    ('{"points": [{"x": 1, "y": 2}]}', "point 1 has no color"),
    ('{"points": [{"x": "1", "y": 2, "color": "#fff"}]}', "x must be a number of pixels, got '1'"),
    ('{"points": [{"x": NaN, "y": 2, "color": "#fff"}]}', "x must be a number of pixels, got nan"),
    ('{"points": [{"x": 60, "y": 2, "color": "#fff"}]}', "point 1 (x=60, y=2) is outside the 60x40 photo"),
    ('{"points": [{"x": 3, "y": -0.5, "color": "#fff"}]}', "point 1 (x=3, y=-0.5) is outside the 60x40 photo"),
    (json.dumps({"points": [{"x": 1, "y": 1, "color": "#fff"}] * 65}), "65 points are too many; a photo takes at most 64"),
    ('{"points": [], "width": 640, "height": 480}', "made for a 640x480 photo, not this 60x40 one"),
    ('{"points": [], "width": 640}', '"width" and "height" are the photo\'s size in pixels'),
])
def test_bad_hints_get_one_clear_line(text, message):
    with pytest.raises(ColorganError) as error:
        hints.resolve(hints.loads(text, "photo.json"), PHOTO, "photo.json")
    assert message in str(error.value)
    assert str(error.value).startswith("photo.json") and "\n" not in str(error.value)


def test_the_forms_of_a_hint_all_say_the_same():
    as_json = hints.resolve(hints.loads('{"points": [{"x": 10, "y": 5, "color": "#B3261E"}], "width": 60, '
                                        '"height": 40}'), PHOTO)
    as_dicts = hints.resolve([{"x": 10, "y": 5, "color": "b3261e"}], PHOTO)
    as_tuples = hints.resolve([(10.9, 5.2, (179, 38, 30))], PHOTO)  # the same pixel
    np.testing.assert_array_equal(as_json.ab, as_dicts.ab)
    np.testing.assert_array_equal(as_json.ab, as_tuples.ab)
    assert hints.parse_color("#abc") == (0xaa, 0xbb, 0xcc) and hints.Point(0, 0, (179, 38, 30)).hex == "#b3261e"


def test_a_hint_is_its_colours_ab_at_the_photos_own_lightness():
    photo = np.zeros((20, 30, 3), np.uint8)
    photo[:, :15] = 128   # L* 53.6
    photo[:, 15:] = 40    # L* 16.8: a dark pixel
    resolved = hints.resolve([(3, 3, "#a05a50"), (20, 3, "#ff0000"), (20, 10, "#ffff00")], photo)
    muted = lab_of([[0xa0, 0x5a, 0x50]])[0]
    # A colour that exists at the photo's L* keeps its a*b* (its own lightness does not count).
    np.testing.assert_allclose(resolved.ab[0], muted[1:], atol=0.01)
    # One that does not is pulled towards gray at the photo's L* and the same hue, into sRGB.
    for ab, picked in ((resolved.ab[1], lab_of([[255, 0, 0]])[0]), (resolved.ab[2], lab_of([[255, 255, 0]])[0])):
        assert np.hypot(*ab) < np.hypot(*picked[1:]) - 1.0
        assert abs(np.arctan2(ab[1], ab[0]) - np.arctan2(picked[2], picked[1])) < 1e-3
        linear = color.lab_to_linear(np.array([lab_of([[40, 40, 40]])[0][0], *ab], np.float32)).numpy()
        assert -1e-3 < linear.min() and linear.max() < 1 + 1e-3  # inside sRGB,
        assert linear.min() < 0.02 or linear.max() > 0.98        # and at its edge: no more chroma than it must lose
    # A gray photo (H x W, or H x W x 1) gives the same L* as its RGB form.
    gray = hints.resolve([(3, 3, "#a05a50")], photo[..., 0])
    np.testing.assert_allclose(gray.ab, resolved.ab[:1], atol=1e-5)


def test_the_maps_put_each_point_in_its_model_pixel():
    resolved = hints.resolve([(0, 0, "#b3261e"), (59.99, 39.99, "#2f6fb2"), (17.9, 9.9, "#2f6fb2"),
                              (16.0, 8.5, "#b3261e")], PHOTO)
    maps = resolved.maps(16)
    assert maps.shape == (16, 16, 3) and maps.dtype == np.float32
    # floor(x * 16 / 60), floor(y * 16 / 40): (0, 0), (15, 15), and two points sharing (3, 4).
    assert sorted(map(tuple, np.argwhere(maps[..., 2]))) == [(0, 0), (3, 4), (15, 15)]
    assert set(np.unique(maps[..., 2])) == {0.0, 1.0}
    np.testing.assert_allclose(maps[0, 0, :2], resolved.ab[0] / 110, rtol=1e-6)
    np.testing.assert_allclose(maps[3, 4, :2], (resolved.ab[2] + resolved.ab[3]) / 220, rtol=1e-6)
    assert not maps[..., :2][maps[..., 2] == 0].any()
    assert not hints.resolve([], PHOTO).maps(16).any()


def test_evaluation_samples_the_true_colours_with_a_fixed_seed():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    first, again = hints.sample(rgb, 6, seed=0, name="a.jpg"), hints.sample(rgb, 6, seed=0, name="a.jpg")
    np.testing.assert_array_equal(first.xy, again.xy)
    assert not np.array_equal(first.xy, hints.sample(rgb, 6, seed=0, name="b.jpg").xy)
    lab = skimage.color.rgb2lab(rgb)
    x, y = first.xy[0].astype(int)
    patch = lab[max(0, y - 2):y + 3, max(0, x - 2):x + 3, 1:].reshape(-1, 2).mean(0)
    np.testing.assert_allclose(first.ab[0], patch, atol=0.01)


# --------------------------------------------------------------------------------------------------
# Simulated hints for training


def test_simulated_hints_are_none_for_half_the_photos_else_a_geometric_count_of_patch_means():
    ab = tf.random.stateless_uniform([1000, 16, 16, 2], [0, 1], -0.5, 0.5)
    maps = hints.simulate(ab, [5, 6])
    counts = tf.reduce_sum(maps[..., 2], [1, 2]).numpy()
    assert 0.45 < (counts == 0).mean() < 0.55
    # 1 + Geometric(1/8) points, a few of which share a pixel at 16 x 16.
    assert 7.0 < counts[counts > 0].mean() < 8.5 and counts.max() <= hints.MAX_POINTS
    # Each hint is the mean of the true ab over an odd square (1 to 9) around its pixel.
    patches = np.stack([tf.nn.avg_pool2d(ab, side, 1, "SAME").numpy() for side in (1, 3, 5, 7, 9)])
    photo, row, col = np.argwhere(maps[..., 2].numpy())[:200].T
    values = maps.numpy()[photo, row, col, :2]
    shared = [np.abs(patches[:, p, r, c] - v).sum(-1).min() for p, r, c, v in zip(photo, row, col, values)]
    assert np.mean(np.array(shared) < 1e-6) > 0.95  # the rest are two points averaged in one pixel
    # The same seed, the same hints; another, others. Exactly N each when asked.
    np.testing.assert_array_equal(maps, hints.simulate(ab, [5, 6]))
    assert not np.array_equal(maps, hints.simulate(ab, [5, 7]))
    ten = tf.reduce_sum(hints.simulate(ab[:50], [1, 1], count=10)[..., 2], [1, 2]).numpy()
    assert ten.max() == 10 and ten.min() >= 8


# --------------------------------------------------------------------------------------------------
# The hint branch


def random_hint_maps(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    maps = np.zeros((batch, size, size, 3), np.float32)
    mask = rng.random((batch, size, size)) < 0.05
    maps[mask] = np.concatenate([rng.uniform(-0.6, 0.6, (mask.sum(), 2)), np.ones((mask.sum(), 1))], -1)
    return maps


def randomise_hint_branch(generator, seed=1):
    """Every hint_* weight random, as if trained."""
    rng = np.random.default_rng(seed)
    for layer in generator.layers:
        if layer.name.startswith("hint_"):
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])


@pytest.mark.parametrize("name,options", [("unet", dict(base_filters=8, depth=5)),
                                          ("resunet", dict(width=8, depth=4, blocks=1)),
                                          ("unet", dict(base_filters=8, depth=5, head="classes"))])
def test_a_hint_model_starts_as_the_model_without_hints_and_without_hints_stays_it(tmp_path, name, options):
    base = models.build_generator(name, 32, **options)
    base.set_weights([w + np.random.default_rng(2).normal(0, 0.05, w.shape).astype(np.float32)
                      for w in base.get_weights()])
    saving.save_generator(base, tmp_path / "base.keras")
    hinted = models.build_generator(name, 32, hints=True, **options)
    assert [t.name for t in hinted.inputs] == ["L", "hints"]
    saving.copy_weights(str(tmp_path / "base.keras"), hinted)  # --init_from
    l = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    maps = random_hint_maps(2, 32)
    expected = base(l).numpy()
    np.testing.assert_array_equal(hinted([l, maps]).numpy(), expected)  # the branch starts at zero
    randomise_hint_branch(hinted)
    assert np.abs(hinted([l, maps]).numpy() - expected).max() > 0.01  # a trained branch uses the hints
    np.testing.assert_array_equal(hinted([l, np.zeros_like(maps)]).numpy(), expected)  # and adds 0 without


def test_a_model_with_context_and_hints_starts_from_one_with_context(tmp_path):
    """The long run's generator has the scene context; its hint run starts from it."""
    options = dict(encoder_weights="none", decoder_filters=(16, 8, 8, 8, 8))
    base = models.build_generator("backbone:efficientnet_lite0", 32, context=True, **options)
    saving.save_generator(base, tmp_path / "context.keras")
    both = models.build_generator("backbone:efficientnet_lite0", 32, context=True, hints=True, **options)
    saving.copy_weights(str(tmp_path / "context.keras"), both)
    l = np.random.default_rng(4).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(both([l, random_hint_maps(1, 32)]).numpy(), base(l).numpy())
    with pytest.raises(ColorganError, match="does not fit this run's"):
        saving.copy_weights(str(tmp_path / "context.keras"), models.build_generator(
            "backbone:efficientnet_lite0", 32, hints=True, encoder_weights="none", decoder_filters=(16, 16, 8, 8, 8)))


def test_training_the_hint_branch_alone_leaves_every_other_weight_as_it_was(tmp_path):
    from colorgan import training
    from test_training import tiny_config
    base = models.build_generator("unet", 64, base_filters=8, depth=6)
    saving.save_generator(base, tmp_path / "base.keras")
    cfg = tiny_config(tmp_path / "run", generator_options="base_filters=8,depth=6,hints=true",
                      init_from=str(tmp_path / "base.keras"), train_hints_only=True, pretrain_steps=3,
                      train_steps=0, eval_every=3, hint_none_share=0.0, lr_generator=1e-2, ema=0.9, export=True)
    result = training.train(cfg)
    assert np.isfinite(result["val/psnr_hints"]) and np.isfinite(result["val/psnr"])
    trained = saving.load_generator(result["generator"])[0]  # the weight averages
    moved = {layer.name for layer in trained.layers if any(
        np.abs(w).max() > 0 for w in layer.get_weights()) and layer.name.startswith("hint_") and "_out" in layer.name}
    assert moved  # the zero-started ends of the branch learned something
    for layer in trained.layers:
        if not layer.name.startswith("hint_") and layer.get_weights():
            for mine, theirs in zip(layer.get_weights(), base.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ColorganError, match="has none: add hints=true"):
        training.Trainer(tiny_config(tmp_path / "plain", train_hints_only=True))


# --------------------------------------------------------------------------------------------------
# Colouring with hints: the known answer, every saved form, the command line, evaluation, the API


def gradient_photo(width=120, height=90):
    """A gray ramp, left dark to right light: every column its own L*."""
    return np.tile(np.linspace(60, 200, width).astype(np.uint8), (height, 1))


def test_a_hint_pulls_its_neighbourhood_toward_its_colour():
    """On a model built for it: the known answer at the model's size, then at the photo's."""
    from conftest import hint_model_built_for_it
    from colorgan import inference
    vivid = inference.load_colorizer(hint_model_built_for_it(32, gain=2.0, gray=False))
    l = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    maps = np.zeros((1, 32, 32, 3), np.float32)
    maps[0, 10, 20] = (0.5, -0.4, 1.0)
    before, after = vivid.predict_ab(l), vivid.predict_ab(l, maps)
    near = np.zeros((32, 32), bool)
    near[9:12, 19:22] = True
    np.testing.assert_allclose(after[0][near], np.tanh(np.arctanh(before[0][near]) + 2.0 * maps[0, 10, 20, :2]),
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(after[0][~near], before[0][~near])

    # A photo: the colour at the click becomes the hint's, the rest of the photo stays as it was.
    colorizer = inference.load_colorizer(hint_model_built_for_it(32))
    photo = gradient_photo()
    plain = colorizer.colorize(photo)
    assert (plain == plain[..., :1]).all()  # gray without hints
    hinted = colorizer.colorize(photo, hints=[{"x": 70, "y": 40, "color": "#1565c0"}])
    wanted = hints.resolve([(70, 40, "#1565c0")], photo).ab[0]
    got = skimage.color.rgb2lab(hinted[40:41, 70:71])[0, 0, 1:]
    assert np.dot(got, wanted) / np.linalg.norm(got) / np.linalg.norm(wanted) > 0.99  # its hue
    assert 0.75 * np.linalg.norm(wanted) < np.linalg.norm(got) <= np.linalg.norm(wanted) + 1  # nearly its chroma
    changed = np.argwhere(np.abs(hinted.astype(int) - plain).max(-1) > 0)
    # A model pixel is 3.75 x 2.8 photo pixels: the 3 x 3 around it, and the bilinear resize one further.
    assert np.abs(changed - (40, 70)).max(0).tolist() <= [8, 10]
    np.testing.assert_allclose(skimage.color.rgb2lab(hinted)[..., 0], skimage.color.rgb2lab(plain)[..., 0], atol=0.7)
    with pytest.raises(ColorganError, match="takes no colour hints"):
        inference.load_colorizer(models.build_generator("unet", 32, base_filters=8, depth=5)).colorize(
            photo, hints=[(70, 40, "#1565c0")])


def test_the_same_hints_give_the_same_colours_in_every_saved_form(tmp_path):
    """Keras, the SavedModel (predict_ab and colorize_with_hints), ONNX and TFLite, each within its tolerance."""
    from conftest import hint_model_built_for_it
    from colorgan import export, inference, onnx_export
    generator = hint_model_built_for_it(32, gray=False)
    randomise_hint_branch(generator)  # every branch, at every stride, in use
    photo = np.asarray(skimage.data.astronaut()[:150, :200])
    given = [{"x": 20, "y": 30, "color": "#c62828"}, {"x": 150.5, "y": 100, "color": "#2e7d32"},
             {"x": 99, "y": 12, "color": "#f9d71c"}]
    keras_model = inference.load_colorizer(generator)
    reference = keras_model.colorize(photo, hints=given)
    assert np.abs(reference.astype(int) - keras_model.colorize(photo)).max() > 20  # the hints matter

    saved = export.export_saved_model(generator, 32, tmp_path / "serving")
    onnx_path = onnx_export.write_onnx(onnx_export.convert_onnx(generator, 32), tmp_path / "g.onnx", 32)
    calibration = export.l_batches("samples", "train", 32, 6, with_hints=True)
    forms = {"saved_model": (str(saved), 1), "onnx": (str(onnx_path), 1)}
    for variant, tolerance in (("float32", 1), ("int8", None)):
        path = tmp_path / f"g_{variant}.tflite"
        export.write_tflite(export.convert_tflite(generator, 32, variant, calibration), path, 32, variant)
        forms[f"tflite {variant}"] = (str(path), tolerance)
    for form, (path, tolerance) in forms.items():
        colorizer = inference.load_colorizer(path)
        assert colorizer.takes_hints, form
        output = colorizer.colorize(photo, hints=given)
        if tolerance is None:  # int8: quantised weights, activations and hint maps
            mse = np.mean((output.astype(float) - reference) ** 2)
            assert 10 * np.log10(255 ** 2 / mse) > 30, form
        else:
            assert np.abs(output.astype(int) - reference).max() <= tolerance, form

    # The SavedModel's own signature, JPEG bytes and hints in, as TF Serving runs it.
    signature = tf.saved_model.load(str(saved)).signatures["colorize_with_hints"]
    points = np.array([[[p["x"], p["y"]] for p in given] + [[-1, -1]]], np.float32)  # one row of padding
    colours = np.array([[hints.parse_color(p["color"]) for p in given] + [(0, 0, 0)]], np.uint8)
    answer = signature(images=tf.constant([tf.io.encode_png(photo).numpy()]), hint_points=tf.constant(points),
                       hint_colors=tf.constant(colours))["images_bytes"][0]
    assert np.abs(tf.io.decode_png(answer).numpy().astype(int) - reference).max() <= 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="every hint point must lie in its photo"):
        signature(images=tf.constant([tf.io.encode_png(photo).numpy()]),
                  hint_points=tf.constant([[[200.0, 10.0]]]), hint_colors=tf.constant([[[255, 0, 0]]], tf.uint8))


@pytest.fixture(scope="module")
def hint_model_file(tmp_path_factory):
    from conftest import hint_model_built_for_it
    path = tmp_path_factory.mktemp("model") / "hints.keras"
    saving.save_generator(hint_model_built_for_it(32), path)
    return path


def run_cli(command, *args):
    """(exit status, stdout, stderr) of `colorgan COMMAND ARGS`, in this process."""
    import contextlib
    import io

    from colorgan import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(["colorgan", command, *args])
        except SystemExit as e:
            status = e.code
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("hints_text,message", [
    ('{"points": [{"x": 5, "y": 5, "color": "#ff0000"}', "hints.json: not valid JSON"),
    ('{"points": [{"x": 120, "y": 5, "color": "#ff0000"}]}', "point 1 (x=120, y=5) is outside the 120x90 photo"),
    ('{"points": [{"x": 5, "y": 5, "color": "crimson"}]}', "'crimson' is not a colour"),
    (json.dumps({"points": [{"x": 5, "y": 5, "color": "#f00"}] * 70}), "70 points are too many"),
    (None, "takes no colour hints"),
    ("two photos", "gives the colour hints of one photo, and the inputs hold 2"),
])
def test_colorize_refuses_bad_hints_in_one_line_and_writes_nothing(tmp_path, hint_model_file, hints_text, message):
    from PIL import Image
    Image.fromarray(gradient_photo()).save(tmp_path / "photo.png")
    hint_file, model = tmp_path / "hints.json", hint_model_file
    inputs = [str(tmp_path / "photo.png")]
    hint_file.write_text(hints_text if hints_text not in (None, "two photos") else '{"points": []}')
    if hints_text is None:
        model = tmp_path / "plain.keras"
        saving.save_generator(models.build_generator("unet", 32, base_filters=8, depth=5), model)
    if hints_text == "two photos":
        inputs.append(inputs[0])
        Image.fromarray(gradient_photo()).save(tmp_path / "other.png")
        inputs[1] = str(tmp_path / "other.png")
    status, _, err = run_cli("colorize", *inputs, f"--model={model}", f"--hints={hint_file}",
                             f"--output_dir={tmp_path / 'out'}", "--noprogress")
    assert status == 2, err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not list((tmp_path / "out").glob("*.png"))


def test_colorize_with_a_hints_file_colours_the_place_it_names(tmp_path, hint_model_file):
    from PIL import Image
    Image.fromarray(gradient_photo()).save(tmp_path / "photo.png")
    (tmp_path / "hints.json").write_text(json.dumps(
        {"points": [{"x": 30, "y": 60, "color": "#c62828"}], "width": 120, "height": 90}))
    status, out, err = run_cli("colorize", str(tmp_path / "photo.png"), f"--model={hint_model_file}",
                               f"--hints={tmp_path / 'hints.json'}", f"--output_dir={tmp_path / 'out'}", "--noprogress")
    assert status == 0, err
    assert "done 1, skipped 0, failed 0" in out
    rgb = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    red, green, blue = rgb[60, 30].astype(int)
    assert red > green + 30 and red > blue + 30  # the hint's red, there
    assert (rgb[10, 100] == rgb[10, 100, 0]).all()  # gray far from it


def test_evaluate_gives_n_hints_of_the_real_colours_with_a_fixed_seed(tmp_path, hint_model_file):
    scores = {}
    for count in (0, 8, 8):
        out_dir = tmp_path / f"hints{count}-{len(scores)}"
        status, out, err = run_cli("evaluate", f"--model={hint_model_file}", "--data=samples", "--max_images=3",
                                   "--size=64", "--nofid", f"--hints={count}", f"--out_dir={out_dir}")
        assert status == 0, err
        report = json.loads((out_dir / "metrics.json").read_text())
        scores[len(scores)] = report["model"]["psnr"]
        assert (report["protocol"]["hints"] or {}).get("per_photo", 0) == count
    assert scores[1] > scores[0] + 0.2  # the real colours at 8 places lift a gray model's PSNR
    assert scores[1] == scores[2]       # the same draws every time
    status, _, err = run_cli("evaluate", "--model=gray", "--data=samples", "--max_images=2", "--nofid", "--hints=5",
                             f"--out_dir={tmp_path / 'gray'}")
    assert status == 2 and "not a baseline" in err and err.count("\n") == 1
    status, _, err = run_cli("evaluate", f"--model={hint_model_file}", "--data=samples", "--nofid", "--hints=65",
                             f"--out_dir={tmp_path / 'many'}")
    assert status == 2 and "--hints must be from 0 to 64" in err


def test_the_web_api_takes_hints_in_the_query_or_a_form_field(hint_model_file):
    import io
    import urllib.parse

    from PIL import Image

    from colorgan import inference, serve
    from test_serve import form, png_bytes, request
    server = serve.ColorizeServer(inference.load_colorizer(str(hint_model_file)), port=0, quiet=True)
    server.serve_in_background()
    try:
        photo = png_bytes(np.repeat(gradient_photo()[..., None], 3, -1))
        document = json.dumps({"points": [{"x": 30, "y": 60, "color": "#c62828"}]})
        status, _, body = request(server.url + "healthz")
        assert json.loads(body)["hints"] is True and json.loads(body)["max_hints"] == hints.MAX_POINTS
        status, _, body = request(server.url + "api/colorize?hints=" + urllib.parse.quote(document), photo)
        assert status == 200
        by_query = np.asarray(Image.open(io.BytesIO(body)))
        assert by_query[60, 30, 0] > by_query[60, 30, 1] + 30 and (by_query[10, 100] == by_query[10, 100, 0]).all()
        status, _, body = request(server.url + "api/colorize", *form([("file", "p.png", photo),
                                                                     ("hints", "h.json", document.encode())]))
        assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body))), by_query)
        for bad, message in (('{"points": [', "hints: not valid JSON"),
                             ('{"points": [{"x": 500, "y": 1, "color": "#fff"}]}', "outside the 120x90 photo"),
                             ('{"points": [{"x": 5, "y": 1, "color": "teal"}]}', "'teal' is not a colour")):
            status, _, body = request(server.url + "api/colorize?hints=" + urllib.parse.quote(bad), photo)
            assert status == 400 and message in json.loads(body)["error"], body
    finally:
        server.close()
