"""The web colorizer's HTTP API, on localhost only: good photos, bad files, limits, concurrency."""
import concurrent.futures
import io
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from colorgan import serve
from colorgan.errors import ColorganError

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")
# No proxy, whatever the environment says: these requests must stay on this machine.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url, body=None, headers=None, timeout=30):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/octet-stream",
                                                          **(headers or {})})
    try:
        with OPENER.open(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def png_bytes(pixels, **options):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def lightness(rgb):
    from skimage.color import rgb2lab
    rgb = rgb[..., None] if rgb.ndim == 2 else rgb
    return rgb2lab(np.broadcast_to(rgb[..., :3], rgb.shape[:2] + (3,)))[..., 0]


def decode(body):
    return np.asarray(Image.open(io.BytesIO(body)))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from colorgan import models
    path = tmp_path_factory.mktemp("model") / "g.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(path)
    return path


@pytest.fixture(scope="module")
def server(model_path):
    from colorgan.inference import load_colorizer
    # max_pixels is lowered so that a small, highly compressible PNG can cross it.
    server = serve.ColorizeServer(load_colorizer(str(model_path)), port=0, max_pixels=2_000_000,
                                  quiet=True).serve_in_background()
    yield server
    server.close()


def test_healthz(server):
    status, headers, body = request(server.url + "healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["image_size"] == 32
    assert health["max_upload_bytes"] == 20_000_000  # the default limit


def test_page_is_self_contained(server):
    status, headers, body = request(server.url)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # Nothing fetched from elsewhere: every src/href is local, a data: URL or filled in by the script.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page and "url(http" not in page
    for needed in ('type="file"', 'id="download"', 'type="range"', "<progress", "api/colorize"):
        assert needed in page


@pytest.mark.parametrize("name", ["coffee.png", "camera.png"])  # a colour photo and a real B&W one
def test_colorize_good_photo(server, name):
    with open(os.path.join(SKIMAGE_DATA, name), "rb") as f:
        upload = f.read()
    status, headers, body = request(server.url + "api/colorize", upload)
    assert status == 200 and headers["Content-Type"] == "image/png", body[:200]
    original, result = decode(upload), decode(body)
    assert result.shape == original.shape[:2] + (3,) and result.dtype == np.uint8
    # Full resolution, and the photo's own lightness: only the colour is the model's.
    assert np.abs(lightness(result) - lightness(original)).mean() < 1.0


def test_colorize_follows_exif_orientation(server):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    Image.fromarray(np.full((30, 50, 3), 128, np.uint8)).save(buffer, format="JPEG", exif=exif)
    status, _, body = request(server.url + "api/colorize", buffer.getvalue())
    assert status == 200 and decode(body).shape == (50, 30, 3)


NOISE = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)  # 2000 bytes of it: surely truncated


@pytest.mark.parametrize("upload", [b"", b"this is not an image" * 100, png_bytes(NOISE)[:2000]],
                         ids=["empty", "text", "truncated-png"])
def test_bad_file_gets_400_with_a_message(server, upload):
    status, headers, body = request(server.url + "api/colorize", upload)
    assert status == 400 and headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert "image" in message and "BytesIO" not in message and "Traceback" not in message


def test_form_upload_is_explained(server):
    status, _, body = request(server.url + "api/colorize", b"--x\r\n\r\n--x--",
                              {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and "--data-binary" in json.loads(body)["error"]


def test_too_large_upload_gets_413(server):
    status, _, body = request(server.url + "api/colorize", b"\0" * (20_000_000 + 1))
    assert status == 413 and "20 MB" in json.loads(body)["error"]


def test_too_large_upload_is_refused_before_it_is_sent(server):
    # With `Expect: 100-continue` (curl sends it for large bodies) the 413 comes before any byte of the body.
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(b"POST /api/colorize HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
                           b"Expect: 100-continue\r\n\r\n")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_too_many_pixels_gets_413(server):
    upload = png_bytes(np.zeros((1500, 1500), np.uint8))  # a few kB, but 2.25 MP > the 2 MP limit
    status, _, body = request(server.url + "api/colorize", upload)
    assert status == 413 and "1500x1500" in json.loads(body)["error"]


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/web/index.html", "/colorgan/serve.py",
                                  "/%2e%2e/%2e%2e/etc/passwd", "/healthz/../serve.py"])
def test_paths_in_requests_are_never_read(server, path):
    status, _, body = request(server.url.rstrip("/") + path)
    assert status == 404 and b"root:" not in body and b"import" not in body
    status, _, _ = request(server.url.rstrip("/") + path, b"x")
    assert status == 404


def test_uploads_never_touch_the_file_system(server):
    """Audit every file the process opens for writing while a photo is coloured."""
    written, watching = [], threading.Event()

    def audit(event, args):
        if not watching.is_set():
            return
        if event == "open":
            path, mode, flags = args
            if re.search(r"[wax+]", mode or "") or (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                written.append(path)
        elif event in ("os.rename", "shutil.copyfile", "tempfile.mkstemp", "tempfile.mkdtemp"):
            written.append(args[0])

    sys.addaudithook(audit)  # cannot be removed; inert once `watching` is cleared
    with open(os.path.join(SKIMAGE_DATA, "astronaut.png"), "rb") as f:
        upload = f.read()
    watching.set()
    try:
        status, _, _ = request(server.url + "api/colorize", upload)
    finally:
        watching.clear()
    assert status == 200 and written == []


def test_50_concurrent_requests_all_get_their_own_answer(server):
    """50 simultaneous uploads of different sizes: all succeed, none crosses over, the server lives on."""
    with open(os.path.join(SKIMAGE_DATA, "astronaut.png"), "rb") as f:
        astronaut = decode(f.read())
    photos = [astronaut[i:i + 40 + i, 2 * i:2 * i + 60 + i] for i in range(50)]  # each its own size
    start = threading.Barrier(len(photos), timeout=30)

    def colorize(photo):
        upload = png_bytes(photo)
        start.wait()  # all at once
        return request(server.url + "api/colorize", upload, timeout=90)

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(photos)) as pool:
        answers = list(pool.map(colorize, photos, timeout=120))
    elapsed = time.monotonic() - began
    print(f"50 concurrent requests answered in {elapsed:.1f} s")

    assert [status for status, _, _ in answers] == [200] * len(photos)
    for photo, (_, _, body) in zip(photos, answers):
        result = decode(body)
        assert result.shape == photo.shape
        assert np.abs(lightness(result) - lightness(photo)).mean() < 1.0
    assert elapsed < 90
    status, _, body = request(server.url + "healthz")
    assert status == 200 and json.loads(body)["queued"] == 0


class BlockingColorizer:
    """Stands in for a model that is slow: colorize waits until released."""
    kind, image_size = "fake", 8

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def colorize(self, pixels):
        self.entered.set()
        assert self.release.wait(30)
        return np.zeros(pixels.shape[:2] + (3,), np.uint8)


def test_full_queue_gets_503_and_recovers():
    colorizer = BlockingColorizer()
    server = serve.ColorizeServer(colorizer, port=0, queue_size=1, quiet=True).serve_in_background()
    try:
        upload = png_bytes(np.zeros((8, 8), np.uint8))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(request, server.url + "api/colorize", upload)
            assert colorizer.entered.wait(30)
            status, _, body = request(server.url + "api/colorize", upload)
            assert status == 503 and "busy" in json.loads(body)["error"]
            colorizer.release.set()
            assert first.result(timeout=30)[0] == 200
        assert request(server.url + "api/colorize", upload)[0] == 200  # the slot was given back
    finally:
        colorizer.release.set()
        server.close()


def test_port_in_use_is_one_clear_error(server):
    host, port = server.server_address[:2]
    with pytest.raises(ColorganError, match="another --port"):
        serve.ColorizeServer(BlockingColorizer(), host, port, quiet=True)


def test_without_model_or_shipped_model_exits_with_one_line(monkeypatch, tmp_path, capsys):
    from colorgan import models
    monkeypatch.setattr(models, "DEFAULT_GENERATOR", tmp_path / "default.keras")
    with pytest.raises(SystemExit) as exit_info:
        serve.main([])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--model" in error and "\n" not in error
    with pytest.raises(SystemExit):
        serve.main(["--model", str(tmp_path / "missing.keras")])
    assert "missing.keras" in capsys.readouterr().err


@pytest.mark.parametrize("given", [True, False], ids=["model_flag", "shipped_model"])
def test_main_serves_until_interrupted(given, model_path, monkeypatch, capsys):
    """The entry point end to end (in-process, to spare a second TensorFlow start): it loads the model
    (--model, or the shipped one without it), says where it listens, answers there, and shuts down
    cleanly on Ctrl-C."""
    from colorgan import models
    monkeypatch.setattr(models, "DEFAULT_GENERATOR", model_path)
    real_serve_forever, answers = serve.ColorizeServer.serve_forever, []

    def serve_then_interrupt(server):
        thread = threading.Thread(target=real_serve_forever, args=(server,))
        thread.start()
        try:
            answers.append(request(server.url + "healthz")[0])
        finally:
            server.shutdown()
            thread.join()
        raise KeyboardInterrupt

    monkeypatch.setattr(serve.ColorizeServer, "serve_forever", serve_then_interrupt)
    serve.main((["--model", str(model_path)] if given else []) + ["--port", "0", "--quiet"])
    assert answers == [200]
    served = r".*g\.keras" if given else "the shipped colorizer"
    assert re.search(rf"serving {served} at http://127\.0\.0\.1:\d+/", capsys.readouterr().err)
