"""Photo files that used to come out wrong with exit status 0: lying headers, colour profiles, deep gray
TIFFs, multi-page TIFFs, FIFOs, and the messages for files that are no image at all."""
import io
import os
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from colorgan import cli, models, payload, photos, profiles
from colorgan.errors import ColorganError
from conftest import encode
from icc import cmyk_profile, gray_profile

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
LAB = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "generator.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(str(path))
    return str(path)


def colorize(*args):
    return cli.colorize_main(["colorize", "--noprogress", *map(str, args)])


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def lying_png(width, height, rows, interlace=0):
    """A gray PNG whose zlib stream is complete but holds only ``rows`` rows (PIL accepts it)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, interlace)
    stream = zlib.compress(b"".join(b"\0" + b"\x80" * width for _ in range(rows)), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def interlaced_png(rgb):
    """Pillow cannot write Adam7 PNGs; this does, to check the expected size of interlaced data."""
    rows = b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in payload.ADAM7
                    for row in rgb[y0::dy, x0::dx] if row.size)
    header = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def with_declared_size(contents, image_format, width, height):
    """A real JPEG or GIF of 64 x 64 pixels whose header now declares width x height."""
    data = bytearray(contents)
    if image_format == "JPEG":
        start = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        struct.pack_into(">HH", data, start + 5, height, width)
    else:  # GIF: the logical screen and the first frame's descriptor (no extensions in PIL's output)
        struct.pack_into("<HH", data, 6, width, height)
        descriptor = 13 + 3 * (2 << (data[10] & 7))
        assert data[descriptor] == 0x2C
        struct.pack_into("<HH", data, descriptor + 5, width, height)
    return bytes(data)


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))


def test_a_115_byte_png_declaring_12000_x_12000_pixels_fails_fast():
    contents = lying_png(12000, 12000, rows=1)
    assert len(contents) < 120
    started = time.perf_counter()
    with pytest.raises(ColorganError, match="truncated image data: the file declares 12000 x 12000"):
        photos.decode_photo(contents, name="bomb.png")
    assert time.perf_counter() - started < 1.0  # it used to decode, then colour for 453 s


@pytest.mark.parametrize("case", ["png with half its rows", "interlaced png", "jpeg", "progressive jpeg", "gif"])
def test_data_shorter_than_the_header_declares_is_refused(case):
    contents = {
        "png with half its rows": lambda: lying_png(2000, 2000, rows=1000),
        "interlaced png": lambda: lying_png(400, 400, rows=100, interlace=1),
        "jpeg": lambda: with_declared_size(encode(NOISE, "JPEG"), "JPEG", 4000, 4000),
        "progressive jpeg": lambda: with_declared_size(encode(NOISE, "JPEG", progressive=True), "JPEG", 4000, 4000),
        "gif": lambda: with_declared_size(encode(NOISE.convert("P"), "GIF"), "GIF", 4000, 4000),
    }[case]()
    with pytest.raises(ColorganError, match="truncated image data"):
        photos.decode_photo(contents, name=case)


@pytest.mark.parametrize("image_format, options", [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True, "quality": 5}),
                                                   ("GIF", {})])
def test_large_uniform_photos_which_compress_to_almost_nothing_still_decode(image_format, options):
    white = Image.new("RGB", (3000, 2000), (255, 255, 255))
    contents = encode(white if image_format != "GIF" else white.convert("P"), image_format, **options)
    assert photos.decode_photo(contents).pixels.shape == (2000, 3000, 3)


def test_interlaced_png_decodes_exactly():
    rgb = np.random.default_rng(1).integers(0, 256, (33, 17, 3), dtype=np.uint8)
    np.testing.assert_array_equal(photos.decode_photo(interlaced_png(rgb)).pixels, rgb)


def test_max_pixels_is_checked_from_the_header(monkeypatch):
    contents = encode(NOISE, "PNG")
    monkeypatch.setattr(payload, "check", lambda *a: pytest.fail("decoding started"))
    with pytest.raises(photos.TooManyPixels, match=r"big.png has 64 x 64 pixels .* over the limit of 0.004 MP"):
        photos.decode_photo(contents, name="big.png", max_pixels=4000)


def test_colorize_counts_photos_over_max_pixels_as_failed(model_file, tmp_path, capsys):
    NOISE.save(tmp_path / "big.png")
    NOISE.resize((10, 10)).save(tmp_path / "small.png")
    status = colorize("--model", model_file, "--output_dir", tmp_path / "out", "--max_pixels", 1000, tmp_path / "big.png",
                      tmp_path / "small.png")
    captured = capsys.readouterr()
    assert status == 1 and "done 1, skipped 0, failed 1" in captured.out
    assert "failed: " in captured.err and "big.png has 64 x 64 pixels" in captured.err and "--max_pixels" in captured.err


def profile_of(path):
    with Image.open(path) as image:
        return image.info.get("icc_profile")


def test_only_rgb_profiles_reach_the_outputs(model_file, tmp_path, capsys):
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo.save(inputs / "srgb.png", icc_profile=SRGB)
    photo.convert("L").save(inputs / "gray scan.png", icc_profile=gray_profile())  # the typical input
    photo.convert("L").save(inputs / "gray with rgb profile.png", icc_profile=SRGB)
    photo.save(inputs / "rgb with lab profile.png", icc_profile=LAB)
    photo.convert("CMYK").save(inputs / "cmyk.jpg", icc_profile=cmyk_profile())
    Image.new("LAB", (32, 24), (50, 100, 160)).save(inputs / "lab.tif", icc_profile=LAB)
    assert colorize("--model", model_file, "--output_dir", tmp_path / "out", "--format", "png", inputs) == 0
    out = tmp_path / "out"
    assert profile_of(out / "srgb.png") == SRGB
    for name in ("gray scan", "gray with rgb profile", "rgb with lab profile", "cmyk", "lab"):
        assert profile_of(out / f"{name}.png") is None, name
    assert "done 6, skipped 0, failed 0" in capsys.readouterr().out


def test_cmyk_and_lab_photos_are_converted_with_their_profiles():
    yellow = Image.new("CMYK", (8, 8), (0, 0, 255, 0))
    source = ImageCms.getOpenProfile(io.BytesIO(cmyk_profile()))
    expected = ImageCms.profileToProfile(yellow, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    read = photos.decode_photo(encode(yellow, "TIFF", icc_profile=cmyk_profile()))
    assert read.icc_profile is None
    np.testing.assert_allclose(read.pixels[0, 0], expected.getpixel((0, 0)), atol=2)
    assert np.abs(read.pixels[0, 0].astype(int) - yellow.convert("RGB").getpixel((0, 0))).max() > 20  # not naive
    lab = photos.decode_photo(encode(Image.new("LAB", (8, 8), (50, 100, 160)), "TIFF", icc_profile=LAB))
    assert lab.icc_profile is None and lab.pixels.shape == (8, 8, 3) and lab.pixels[0, 0, 1] > lab.pixels[0, 0, 2]


def test_write_photo_never_writes_a_profile_that_is_not_rgb(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    photos.write_photo(tmp_path / "gray.png", rgb, gray_profile())
    photos.write_photo(tmp_path / "srgb.jpg", rgb, SRGB)
    assert profile_of(tmp_path / "gray.png") is None and profile_of(tmp_path / "srgb.jpg") == SRGB


def test_png_gamma_is_converted_to_srgb():
    info = PngInfo()
    info.add(b"gAMA", struct.pack(">I", 100000))  # gamma 1.0: linear values
    linear = photos.decode_photo(encode(Image.new("L", (4, 4), 128), "PNG", pnginfo=info)).pixels
    assert abs(int(linear[0, 0, 0]) - 188) <= 1  # linear 0.5 is sRGB 188
    info = PngInfo()
    info.add(b"gAMA", struct.pack(">I", 45455))  # what most PNG writers store: sRGB, left alone
    assert photos.decode_photo(encode(Image.new("L", (4, 4), 128), "PNG", pnginfo=info)).pixels[0, 0, 0] == 128
    assert profiles.png_gamma_to_srgb(np.uint8([[0, 255]]), 1.0).tolist() == [[0, 255]]


@pytest.mark.parametrize("mode, values", [("F", (0.0, 1.0)), ("F", (-3.5, 900.0)), ("I", (0, 2 ** 20)),
                                          ("I", (-70000, 5))])
def test_float_and_32_bit_tiffs_are_scaled_by_their_range(mode, values, tmp_path, model_file, capsys):
    ramp = np.linspace(*values, 64 * 48).reshape(48, 64).astype(np.float32 if mode == "F" else np.int32)
    Image.fromarray(ramp).save(tmp_path / "deep.tif")
    assert Image.open(tmp_path / "deep.tif").mode == mode
    pixels = photos.read_photo(tmp_path / "deep.tif").pixels[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255  # not black: the whole range is used
    assert np.all(np.diff(pixels.astype(int), axis=1) >= 0)  # and in order
    assert colorize("--model", model_file, "--output_dir", tmp_path / "out", "--format", "png", tmp_path / "deep.tif") == 0
    assert "32-bit" in capsys.readouterr().err and np.asarray(Image.open(tmp_path / "out" / "deep.png")).mean() > 60


def test_multi_page_tiffs_say_that_only_page_1_is_coloured(tmp_path, model_file, capsys):
    NOISE.save(tmp_path / "scan.tif", save_all=True, append_images=[NOISE.rotate(90), NOISE.rotate(180)])
    assert colorize("--model", model_file, "--output_dir", tmp_path / "out", tmp_path / "scan.tif") == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {tmp_path / 'scan.tif'}: only page 1 of its 3 pages is coloured"]


def test_unknown_formats_name_the_file_not_a_bytesio_object():
    with pytest.raises(ColorganError) as error:
        photos.decode_photo(b"just some text", name="notes.jpg")
    assert "notes.jpg" in str(error.value) and "BytesIO" not in str(error.value) and "object at" not in str(error.value)


def test_a_fifo_is_reported_as_not_a_regular_file_and_never_read(tmp_path, model_file, capsys):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    def read():
        try:
            photos.read_photo(fifo)
        except ColorganError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive()  # opening a FIFO with no writer would block for ever
    with pytest.raises(ColorganError, match="pipe.jpg is not a regular file"):
        photos.read_photo(fifo)
    assert colorize("--model", model_file, "--output_dir", tmp_path / "out", fifo) == 1
    assert "pipe.jpg: not a regular file" in capsys.readouterr().err
