"""The input pipeline: every source, every image form, bad files, stable splits, determinism."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from colorgan import color, data, sources
from colorgan.errors import ColorganError
from conftest import encode, read_rgb


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory, sample_photos):
    """A folder tree of real photos in every awkward form, plus files that cannot be decoded."""
    root = tmp_path_factory.mktemp("messy")
    photo = Image.open(sample_photos[0]).convert("RGB").resize((96, 72))
    (root / "sub" / "deeper").mkdir(parents=True)
    files = {
        "plain.jpg": encode(photo, "JPEG"),
        "UPPER.JPEG": encode(photo.rotate(90, expand=True), "JPEG"),
        "sub/rgba.png": encode(photo.convert("RGBA"), "PNG"),
        "sub/palette.png": encode(photo.convert("P"), "PNG"),
        "sub/cmyk.jpg": encode(photo.convert("CMYK"), "JPEG"),
        "sub/deeper/photo.webp": encode(photo, "WEBP"),
        "sub/deeper/photo.bmp": encode(photo, "BMP"),
        "sub/anim.gif": encode(photo.convert("P"), "GIF", save_all=True, append_images=[photo.rotate(180).convert("P")]),
        "gray.png": encode(photo.convert("L"), "PNG"),
        # broken files: never a crash, always counted
        "empty.jpg": b"",
        "truncated.jpg": encode(photo, "JPEG")[:300],
        "text.jpg": b"this is not an image",
        "error_page.png": b"<html><body>404 Not Found</body></html>",
        "notes.txt": b"ignored: not an image extension",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    # 16-bit RGB PNG, written with numpy so it really is 16 bits per channel
    rgb16 = (np.asarray(photo, np.uint16) * 257)
    tf.io.write_file(str(root / "sub" / "sixteen.png"), tf.io.encode_png(tf.constant(rgb16)))
    return root


def test_list_images_is_recursive_any_case_and_survives_symlink_loops(messy_folder):
    loop = messy_folder / "sub" / "loop"
    if not loop.exists():
        os.symlink(messy_folder, loop)
    names = {os.path.relpath(p, messy_folder) for p in sources.list_images(str(messy_folder))}
    assert "UPPER.JPEG" in names and "sub/deeper/photo.webp" in names and "sub/sixteen.png" in names
    assert "notes.txt" not in names
    assert len(names) == 14


@pytest.mark.parametrize("name", ["plain.jpg", "sub/rgba.png", "sub/palette.png", "sub/cmyk.jpg",
                                  "sub/deeper/photo.webp", "sub/deeper/photo.bmp", "sub/anim.gif",
                                  "gray.png", "sub/sixteen.png"])
def test_decode_image_gives_rgb_in_unit_range_matching_pil(messy_folder, name):
    path = messy_folder / name
    rgb = data.decode_image(tf.io.read_file(str(path))).numpy()
    reference = read_rgb(path) / 255.0
    assert rgb.shape == reference.shape and rgb.dtype == np.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    # CMYK decoders differ by a few levels; every other form must match PIL closely.
    assert np.abs(rgb - reference).mean() < (0.03 if "cmyk" in name else 0.005)


@pytest.mark.parametrize("name", ["empty.jpg", "truncated.jpg", "text.jpg", "error_page.png"])
def test_decode_image_raises_on_broken_files(messy_folder, name):
    with pytest.raises(tf.errors.InvalidArgumentError):
        data.decode_image(tf.io.read_file(str(messy_folder / name)))


def test_folder_training_skips_and_counts_bad_and_gray_files(messy_folder):
    n = len(sources.source_files(f"folder:{messy_folder}", "all"))
    ds = data.make_dataset(f"folder:{messy_folder}", "all", image_size=32, batch_size=1, training=True,
                           with_stats=True, deterministic=True)
    # Two full epochs and one element more: 4 unreadable and 1 gray file per epoch are dropped.
    seen = [stats for _, _, stats in ds.take(2 * (n - 5) + 1)]
    last = {k: v[0].numpy().tolist() for k, v in seen[-1].items()}
    assert last["index"] >= 2 * n
    # Every stream index is accounted for: yielded, unreadable or gray.
    assert last["unreadable"] + last["gray"] + len(seen) == last["index"] + 1
    assert last["unreadable"] >= 8 and last["gray"] >= 2
    per_epoch = [sum(1 for s in seen if int(s["index"][0]) // n == e) for e in (0, 1)]
    assert per_epoch == [n - 5, n - 5]
    # At the first photo of epoch 2, the tallies of epochs 0 and 1 are closed: 4 + 4 and 1 + 1.
    assert last["unreadable"] - last["unreadable_in_epoch"] == 8
    assert last["gray"] - last["gray_in_epoch"] == 2


def test_skip_counts_exact_over_one_epoch(messy_folder):
    files = sources.source_files(f"folder:{messy_folder}", "all")
    ds = data.make_dataset(f"folder:{messy_folder}", "all", image_size=32, batch_size=1, training=False,
                           with_stats=True, skip_gray=True)
    stats = [s for _, _, s in ds]
    assert len(stats) == len(files) - 5
    assert int(stats[-1]["gray"][0]) == 1
    # unreadable files after the last good one leave no gap to see; the ones before it are counted
    assert int(stats[-1]["unreadable"][0]) == sum(
        1 for i, f in enumerate(files) if os.path.basename(f) in ("empty.jpg", "truncated.jpg", "text.jpg", "error_page.png")
        and i < int(stats[-1]["index"][0]))


def test_batches_have_the_right_shapes_ranges_and_colours(sample_photos):
    l, ab = next(iter(data.make_dataset("samples", "train", image_size=48, batch_size=3, training=True)))
    assert l.shape == (3, 48, 48, 1) and ab.shape == (3, 48, 48, 2)
    assert l.dtype == tf.float32 and ab.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(l)) and float(tf.reduce_max(l)) <= 1.0
    assert float(tf.reduce_max(tf.abs(ab))) <= 1.0
    assert float(tf.reduce_mean(tf.abs(ab))) > 0.01  # real colour photos, not gray


def test_eval_transform_is_resize_and_centre_crop(sample_photos):
    path = sample_photos[0]
    rgb = data.decode_image(tf.io.read_file(path))
    cropped = data.eval_transform(rgb, 64).numpy()
    assert cropped.shape == (64, 64, 3)
    l, ab = next(iter(data.make_dataset("samples", "all", image_size=64, batch_size=1, training=False,
                                        deterministic=True)))
    expected_l, expected_ab = color.rgb_to_model(cropped)
    np.testing.assert_allclose(l[0].numpy(), expected_l.numpy(), atol=1e-5)
    np.testing.assert_allclose(ab[0].numpy(), expected_ab.numpy(), atol=1e-5)


def test_split_is_a_stable_function_of_the_relative_path(tmp_path):
    for i in range(200):
        (tmp_path / f"img_{i:03d}.png").write_bytes(b"x")
    train = sources.source_files(f"folder:{tmp_path}", "train", val_share=0.2)
    val = sources.source_files(f"folder:{tmp_path}", "val", val_share=0.2)
    assert not set(train) & set(val) and len(train) + len(val) == 200
    assert 20 <= len(val) <= 60
    # The same relative paths land in the same split wherever the folder lives: a copy elsewhere
    # (another machine, another mount point) splits identically, a nested copy by its own root.
    moved = tmp_path.parent / f"{tmp_path.name}-moved" / "deeper" / "photos"
    moved.mkdir(parents=True)
    for f in tmp_path.iterdir():
        (moved / f.name).write_bytes(b"x")
    val_moved = sources.source_files(f"folder:{moved}", "val", val_share=0.2)
    assert [os.path.basename(p) for p in val_moved] == [os.path.basename(p) for p in val]
    # ... while a different share moves photos only from train to val, never back.
    wider = sources.source_files(f"folder:{tmp_path}", "val", val_share=0.4)
    assert set(val) < set(wider)


def test_deterministic_runs_yield_identical_batches_and_resume_by_index():
    def batches(start_index=0, n=3):
        ds = data.make_dataset("samples", "train", image_size=32, batch_size=2, training=True, seed=7,
                               deterministic=True, start_index=start_index, with_stats=True)
        return [(l.numpy(), ab.numpy(), s["index"].numpy()) for l, ab, s in ds.take(n)]
    first, second = batches(), batches()
    for (l1, ab1, i1), (l2, ab2, i2) in zip(first, second):
        np.testing.assert_array_equal(l1, l2)
        np.testing.assert_array_equal(ab1, ab2)
    # Restarting at the index reached after one batch reproduces the rest of the stream.
    resumed = batches(start_index=int(first[0][2][-1]) + 1, n=2)
    np.testing.assert_array_equal(resumed[0][0], first[1][0])
    np.testing.assert_array_equal(resumed[1][1], first[2][1])
    # A different seed changes the order or the crops.
    other = data.make_dataset("samples", "train", image_size=32, batch_size=2, training=True, seed=8,
                              deterministic=True)
    assert not np.array_equal(next(iter(other))[0].numpy(), first[0][0])


def test_samples_source_is_offline_and_split():
    train = sources.source_files("samples", "train")
    val = sources.source_files("samples", "val")
    assert len(train) >= 2 and len(val) >= 1 and not set(train) & set(val)


def test_cache_gives_the_same_batches():
    kw = dict(image_size=32, batch_size=2, training=True, deterministic=True, seed=3)
    a = next(iter(data.make_dataset("samples", "train", cache=True, **kw)))
    b = next(iter(data.make_dataset("samples", "train", cache=False, **kw)))
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_sharded_streams_cover_disjoint_indices():
    kw = dict(image_size=32, batch_size=2, training=True, deterministic=True, with_stats=True)
    w0 = next(iter(data.make_dataset("samples", "train", shard=(2, 0), **kw)))[2]["index"].numpy()
    w1 = next(iter(data.make_dataset("samples", "train", shard=(2, 1), **kw)))[2]["index"].numpy()
    assert list(w0) == [0, 2] and list(w1) == [1, 3]


@pytest.mark.parametrize("source,fix", [("nonsense", "folder:PATH"), ("folder:/does/not/exist", "does not exist")])
def test_bad_sources_fail_with_one_clear_line(source, fix):
    with pytest.raises(ColorganError, match=fix):
        data.make_dataset(source, "train", 32, 2, True)


def test_empty_folder_fails_clearly(tmp_path):
    with pytest.raises(ColorganError, match="no images"):
        data.make_dataset(f"folder:{tmp_path}", "train", 32, 2, True)


def test_missing_tfds_dataset_fails_fast_with_the_fetch_command(tmp_path):
    with pytest.raises(ColorganError, match=r"tfds.load\('coco/2017'"):
        data.make_dataset("tfds:coco/2017", "train", 32, 2, True, data_dir=str(tmp_path))


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
    """A real TFDS dataset prepared on disk from the packages' photos: the loading path, no network."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(None, None, 3))}))

    def _split_generators(self, dl_manager):
        photos = sources.sample_photo_files()
        return {"train": self._generate_examples(photos[:-1]), "validation": self._generate_examples(photos[-1:])}

    def _generate_examples(self, paths):
        for i, p in enumerate(paths):
            yield i, {"image": np.asarray(Image.open(p).convert("RGB").resize((80, 64)))}


def test_tfds_source_reads_a_local_dataset_without_downloading(tmp_path):
    TinyPhotos(data_dir=str(tmp_path)).download_and_prepare()
    ds = data.make_dataset("tfds:tiny_photos", "train", image_size=32, batch_size=2, training=True,
                           data_dir=str(tmp_path))
    l, ab = next(iter(ds))
    assert l.shape == (2, 32, 32, 1) and ab.shape == (2, 32, 32, 2)
    val = list(data.make_dataset("tfds:tiny_photos", "val", image_size=32, batch_size=4, training=False,
                                 data_dir=str(tmp_path)))
    assert sum(int(b[0].shape[0]) for b in val) == 1


def test_training_photos_are_turned_upright_by_their_exif_orientation(tmp_path):
    from PIL import Image
    stored = Image.new("RGB", (60, 40), (200, 40, 40))
    stored.paste((40, 40, 200), (0, 0, 30, 40))  # left half blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    contents = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    upright = data.decode_image(tf.constant(contents)).numpy()
    assert upright.shape == (60, 40, 3)  # as people see it, the way inference reads it
    assert upright[5, 20, 2] > 0.6 and upright[-5, 20, 0] > 0.6  # the blue half is now on top


def test_decoded_cache_holds_exactly_the_decoded_pixels_and_marks_bad_files(tmp_path, sample_photos):
    from PIL import Image
    good = tmp_path / "good.png"
    Image.open(sample_photos[0]).convert("RGB").resize((50, 30)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    image_of = data.decoded_photos([str(good), str(bad)])
    np.testing.assert_array_equal(image_of(tf.constant(0, tf.int64)).numpy(),
                                  data.decode_image(tf.io.read_file(str(good))).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="unreadable image"):
        image_of(tf.constant(1, tf.int64))


def test_tfds_training_shuffles_the_files_by_seed_and_shards_per_worker(tmp_path, monkeypatch):
    TinyPhotos(data_dir=str(tmp_path)).download_and_prepare()
    calls = []
    real_load = tfds.load
    monkeypatch.setattr(tfds, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    data.make_dataset("tfds:tiny_photos", "train", image_size=32, batch_size=2, training=True, seed=7,
                      shard=(2, 1), data_dir=str(tmp_path))
    assert calls[-1]["shuffle_files"] and calls[-1]["read_config"].shuffle_seed == 7
    # The tiny dataset has one file, fewer than the workers: each worker keeps its own photos instead.
    counts = [sum(1 for _ in sources.load_tfds("tiny_photos", "all", data_dir=str(tmp_path), shard=(2, w)))
              for w in (0, 1)]
    total = sum(1 for _ in sources.load_tfds("tiny_photos", "all", data_dir=str(tmp_path)))
    assert sum(counts) == total and all(counts)
    val = data.make_dataset("tfds:tiny_photos", "val", image_size=32, batch_size=4, training=False,
                            data_dir=str(tmp_path))
    assert next(iter(val)) is not None and not calls[-1]["shuffle_files"]  # evaluation reads in order


class TinyPhotosInFiles(TinyPhotos):
    """The same photos, a train split only, which download_and_prepare spreads over several files."""

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(sources.sample_photo_files())}


def test_tfds_training_resumes_on_exactly_the_photos_it_had_reached(tmp_path):
    """The stream is replayed to its index: from start_index k it yields what the run from 0 yielded at k."""
    TinyPhotosInFiles(data_dir=str(tmp_path)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=3))
    stream = lambda start, n: [
        (int(stats["index"][0]), l.numpy()) for l, _, stats in data.make_dataset(
            "tfds:tiny_photos_in_files", "train", image_size=32, batch_size=1, training=True, seed=3, start_index=start,
            with_stats=True, data_dir=str(tmp_path)).take(n)]
    whole = stream(0, 24)  # about three epochs of the tiny set: the files reshuffle between them
    resumed = stream(whole[9][0] + 1, 14)
    assert [i for i, _ in resumed] == [i for i, _ in whole[10:]]
    for (_, a), (_, b) in zip(resumed, whole[10:]):
        np.testing.assert_array_equal(a, b)


def test_tfds_workers_read_disjoint_files_that_cover_the_split(tmp_path, monkeypatch):
    TinyPhotosInFiles(data_dir=str(tmp_path)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=4))
    calls = []
    real_load = tfds.load
    monkeypatch.setattr(tfds, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    digest = lambda contents: hash(contents.numpy())
    seen = [[digest(c) for c in sources.load_tfds("tiny_photos_in_files", "train", data_dir=str(tmp_path), shard=(2, w))]
            for w in (0, 1)]
    context = calls[-1]["read_config"].input_context
    assert (context.num_input_pipelines, context.input_pipeline_id) == (2, 1)  # by file, not every n-th photo
    everything = [digest(c) for c in sources.load_tfds("tiny_photos_in_files", "train", data_dir=str(tmp_path))]
    assert all(seen) and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(everything)


def test_source_weights_repeat_or_thin_each_sources_photos(tmp_path, sample_photos):
    (tmp_path / "portraits").mkdir()
    for i in range(40):
        (tmp_path / f"pets_{i:02d}.png").write_bytes(b"x")
        (tmp_path / f"clothing_{i:02d}.png").write_bytes(b"x")
    (tmp_path / "portraits" / "one.png").write_bytes(b"x")
    files = sources.source_files(f"folder:{tmp_path}", "all")
    weighted = sources.source_files(f"folder:{tmp_path}", "all", weights={"pets": 2, "clothing": 0.5, "portraits": 0})
    names = [os.path.basename(f) for f in weighted]
    assert all(names.count(f"pets_{i:02d}.png") == 2 for i in range(40))
    clothing = {n for n in names if n.startswith("clothing")}
    assert 10 <= len(clothing) <= 30 and all(names.count(n) == 1 for n in clothing)
    assert "one.png" not in names and len(files) == 81  # a folder is a source of its own
    # The same share on every run, and a larger fraction keeps a superset.
    again = sources.source_files(f"folder:{tmp_path}", "all", weights={"clothing": 0.5})
    more = sources.source_files(f"folder:{tmp_path}", "all", weights={"clothing": 0.8})
    assert {f for f in again if "clothing" in f} == {f for f in weighted if "clothing" in f} < set(more)
    assert sources.count_examples(f"folder:{tmp_path}", "all", weights={"pets": 2}) == 121
    with pytest.raises(ColorganError, match="names dogs, not a source of this data; its sources are clothing, pets, portraits"):
        sources.source_files(f"folder:{tmp_path}", "all", weights={"dogs": 1})
    with pytest.raises(ColorganError, match="leaves no photo"):
        sources.source_files(f"folder:{tmp_path}", "all", weights={"pets": 0, "clothing": 0, "portraits": 0})
    for bad in ("pets", "pets=-1", "=2", "pets=many"):
        with pytest.raises(ColorganError, match="bad source weight"):
            sources.parse_source_weights(bad)


def test_a_weighted_epoch_reads_repeated_photos_the_same_from_the_cache(tmp_path, sample_photos):
    for i, p in enumerate(sample_photos[:4]):
        Image.open(p).convert("RGB").resize((48, 40)).save(tmp_path / f"{'ab'[i % 2]}_{i}.png")
    kw = dict(image_size=32, batch_size=1, training=True, deterministic=True, seed=5, with_stats=True,
              source_weights={"a": 3}, skip_gray=False)
    cached = list(data.make_dataset(f"folder:{tmp_path}", "all", cache=True, **kw).take(16))
    read = list(data.make_dataset(f"folder:{tmp_path}", "all", cache=False, **kw).take(16))
    for (l1, ab1, s1), (l2, ab2, s2) in zip(cached, read):
        assert int(s1["index"][0]) == int(s2["index"][0])
        np.testing.assert_array_equal(ab1.numpy(), ab2.numpy())
    # An epoch is 2 x 3 photos of source a and 2 of b: eight stream indices per epoch.
    assert sources.count_examples(f"folder:{tmp_path}", "all", weights={"a": 3}) == 8


def _coloured_folder(root, rgb, count, broken=0, gray=0):
    """``count`` flat photos of one colour (their source can be read off their pixels), plus unreadable
    and grayscale files."""
    root.mkdir(parents=True)
    for i in range(count):
        shade = np.clip(np.array(rgb) + i % 5 * 8, 0, 255).astype(np.uint8)
        Image.fromarray(np.broadcast_to(shade, (24, 20, 3)).copy()).save(root / f"photo{i:03d}.png")
    for i in range(broken):
        (root / f"broken{i}.jpg").write_bytes(b"not a photo")
    for i in range(gray):
        Image.fromarray(np.full((24, 20), 128, np.uint8)).save(root / f"gray{i}.png")
    return root


def test_several_sources_each_get_their_share_and_their_own_skip_counts(tmp_path):
    # A red source of 6 photos (1 unreadable) and a blue one of 30 (2 unreadable, 1 gray), shared 70 / 30:
    # the small source is repeated, none is thinned, and a stream's photos come 70 / 30 from each.
    _coloured_folder(tmp_path / "a" / "red", (200, 30, 30), 6, broken=1)
    _coloured_folder(tmp_path / "b" / "blue", (30, 30, 200), 30, broken=2, gray=1)
    source = f"folder:{tmp_path}/a/red,folder:{tmp_path}/b/blue"
    files, labels, names = sources.labelled_files(source, "all", weights={"red": 0.7, "blue": 0.3})
    assert names == ["red", "blue"]
    assert {f for f, label in zip(files, labels) if label == 1} == set(sources.list_images(f"{tmp_path}/b/blue"))
    assert abs(labels.count(0) / len(labels) - 0.7) < 0.01
    ds = data.make_dataset(source, "all", image_size=16, batch_size=1, training=True, with_stats=True,
                           source_weights={"red": 0.7, "blue": 0.3}, deterministic=True)
    reds, seen, last = 0, 0, None
    for _, ab, stats in ds.take(3000):
        reds += float(tf.reduce_mean(ab[..., 1])) > 0  # b* > 0: red; the blue photos have b* < 0
        seen, last = seen + 1, stats
    # The unreadable and gray files take their source's share too: of each 100 photos of the epoch
    # list, 70 red with 70/7 unreadable, and 30 blue with 30 x 2/33 unreadable and 30/33 gray.
    readable_red, readable_blue = 0.7 * 6 / 7, 0.3 * 30 / 33
    assert abs(reds / seen - readable_red / (readable_red + readable_blue)) < 0.02
    index = int(last["index"][0])
    unreadable, gray = last["unreadable_by_source"][0].numpy(), last["gray_by_source"][0].numpy()
    assert unreadable.sum() == int(last["unreadable"][0]) and gray.sum() == int(last["gray"][0])
    assert gray[0] == 0 and unreadable[0] > 0 and unreadable[1] > 0 and gray[1] > 0
    np.testing.assert_allclose(unreadable / (index + 1), [0.7 / 7, 0.3 * 2 / 33], atol=0.01)
    np.testing.assert_allclose(gray / (index + 1), [0, 0.3 / 33], atol=0.01)


def test_several_sources_without_shares_are_one_list_and_weights_within_them_still_apply(tmp_path):
    _coloured_folder(tmp_path / "one", (200, 30, 30), 4)
    _coloured_folder(tmp_path / "two" / "pets", (30, 200, 30), 3)
    both = sources.source_files(f"x=folder:{tmp_path}/one,y=folder:{tmp_path}", "all")
    assert len(both) == 4 + 4 + 3  # the second folder holds the first too
    # 'pets' is a source within the second folder: its photos twice over.
    files, labels, _ = sources.labelled_files(f"x=folder:{tmp_path}/one,y=folder:{tmp_path}/two", "all",
                                              weights={"pets": 2})
    assert labels.count(0) == 4 and labels.count(1) == 6


@pytest.mark.parametrize("source,weights,message", [
    ("folder:{a},folder:{b}/a", {}, "two sources are named a; name each one"),
    ("folder:{a},tfds:coco/2017", {}, "cannot be mixed"),
    ("a=folder:{a},b=folder:{b}", {"a": 1}, "give each one a share, or none"),
    ("a=folder:{a},b=folder:{b}", {"a": 0, "b": 0}, "share of 0"),
    ("a=folder:{a},b=folder:{b}", {"a": 1, "b": 1, "cats": 2}, "names cats, not a source of this data; its sources are a, b"),
    ("a=folder:{a},b=folder:{b}/nowhere", {}, "does not exist"),
])
def test_bad_mixes_of_sources_fail_with_one_clear_line(tmp_path, source, weights, message):
    _coloured_folder(tmp_path / "a", (200, 30, 30), 2)
    _coloured_folder(tmp_path / "b" / "a", (30, 30, 200), 2)
    with pytest.raises(ColorganError, match=message):
        sources.labelled_files(source.format(a=tmp_path / "a", b=tmp_path / "b"), "all", weights=weights)
