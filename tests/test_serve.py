"""The web colorizer's HTTP API, on localhost only: the real server process (`python -m colorgan.serve`)
for the protocol, limits and logs; an in-process server where a test needs a fake, slow model."""
import concurrent.futures
import io
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
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

# Bounds each test, its fixtures included: the first one to use the server process waits for TensorFlow.
pytestmark = pytest.mark.timeout(300)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")
# No proxy, whatever the environment says: these requests must stay on this machine.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BODY_TIMEOUT_S = 3     # the server process's --body_timeout_s: short, so that slow clients fail fast
QUEUE_SIZE = 24        # its --queue_size: room for the 20 concurrent clients, fewer than the 30 slow ones


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


def raw(port, data, timeout=10):
    """The server's bytes in answer to `data` sent as they are, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        return read_all(connection)


def read_all(connection):
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def form(fields, boundary="colorgan-test-7d41"):
    """A multipart/form-data body, as `curl -F name=@file` sends it, and its headers."""
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                    for name, filename, data in fields)
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png_bytes(pixels, **options):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def read_photo(name):
    with open(os.path.join(SKIMAGE_DATA, name), "rb") as f:
        return f.read()


def lightness(rgb):
    from skimage.color import rgb2lab
    rgb = rgb[..., None] if rgb.ndim == 2 else rgb
    return rgb2lab(np.broadcast_to(rgb[..., :3], rgb.shape[:2] + (3,)))[..., 0]


def decode(body):
    return np.asarray(Image.open(io.BytesIO(body)))


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from colorgan import models
    path = tmp_path_factory.mktemp("model") / "g.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(path)
    return path


class ServerProcess:
    """The server's entry point, serve.main (`python -m colorgan.serve ...`: `colorgan serve` without the
    subcommand dispatch), in a subprocess; its log collected line by line."""

    def __init__(self, *flags):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "colorgan.serve", *flags], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(line.rstrip("\n") for line in self.process.stdout),
                         daemon=True).start()
        try:
            wait_until(lambda: self.serving() or self.process.poll() is not None, 240, "the server to start")
        finally:
            if not self.serving():
                self.stop()
        assert self.serving(), "\n".join(self.lines)
        self.url = self.serving().group(1)
        self.port = int(self.serving().group(2))

    def serving(self):
        return next((m for line in list(self.lines) if (m := re.search(r"serving .* at (http://127\.0\.0\.1:(\d+)/)", line))),
                    None)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@pytest.fixture(scope="module")
def server(model_path):
    # max_pixels is lowered so that a small, highly compressible PNG can cross it.
    process = ServerProcess("--model", str(model_path), "--port", "0", "--max_pixels", "2000000",
                            "--body_timeout_s", str(BODY_TIMEOUT_S), "--queue_size", str(QUEUE_SIZE),
                            "--allowed_hosts", "photos.test")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def in_process(model_path):
    from colorgan.inference import load_colorizer
    colorizer = load_colorizer(str(model_path))
    colorizer.colorize(np.zeros((8, 8, 1), np.uint8))  # traced first, as main does (tracing writes temp files)
    server = serve.ColorizeServer(colorizer, port=0, quiet=True).serve_in_background()
    yield server
    server.close()


def test_healthz(server):
    status, headers, body = request(server.url + "healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["image_size"] == 32 and health["queued"] == 0
    assert health["max_upload_bytes"] == 20_000_000  # the default limit


def test_page_is_self_contained(server):
    status, headers, body = request(server.url)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
    # Nothing fetched from elsewhere: every src/href is local, a data: URL or filled in by the script.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page and "url(http" not in page
    for needed in ('type="file"', 'id="download"', 'type="range"', "<progress", "api/colorize"):
        assert needed in page


def test_openapi_docs(server):
    status, headers, body = request(server.url + "docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"swagger" in body.lower()
    status, _, body = request(server.url + "openapi.json")
    upload = json.loads(body)["paths"]["/api/colorize"]["post"]
    assert status == 200 and {"multipart/form-data", "application/octet-stream"} <= set(
        upload["requestBody"]["content"])
    assert [p["name"] for p in upload["parameters"]] == ["saturation", "hints"]
    assert set(upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]) == {"file", "hints"}


@pytest.mark.parametrize("name", ["coffee.png", "camera.png"])  # a colour photo and a real B&W one
@pytest.mark.parametrize("how", ["raw", "form"])                # curl --data-binary, and curl -F file=@
def test_colorize_good_photo(server, name, how):
    upload = read_photo(name)
    body, headers = form([("file", name, upload)]) if how == "form" else (upload, {})
    status, headers, body = request(server.url + "api/colorize", body, headers)
    assert status == 200 and headers["Content-Type"] == "image/png", body[:200]
    original, result = decode(upload), decode(body)
    assert result.shape == original.shape[:2] + (3,) and result.dtype == np.uint8
    # Full resolution, and the photo's own lightness: only the colour is the model's.
    assert np.abs(lightness(result) - lightness(original)).mean() < 1.0


def test_form_with_other_fields_finds_the_file(server):
    body, headers = form([("note", "a.txt", b"hello"), ("file", "cat.png", png_bytes(np.zeros((9, 7), np.uint8)))])
    status, _, answer = request(server.url + "api/colorize", body, headers)
    assert status == 200 and decode(answer).shape == (9, 7, 3)


def test_form_without_a_file_is_explained(server):
    body, headers = form([("a", "a.txt", b"x"), ("b", "b.txt", b"y")])
    status, _, answer = request(server.url + "api/colorize", body, headers)
    assert status == 400 and "-F file=@" in json.loads(answer)["error"]


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


def test_too_large_upload_gets_413(server):
    status, _, body = request(server.url + "api/colorize", b"\0" * (20_000_000 + 1))
    assert status == 413 and "20 MB" in json.loads(body)["error"]


def test_too_large_upload_is_refused_before_it_is_sent(server):
    # With `Expect: 100-continue` (curl sends it for large bodies) the 413 comes before any byte of the body.
    answer = raw(server.port, b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n"
                              b"Expect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")


def test_too_large_chunked_upload_gets_413(server):
    """Without a Content-Length the limit is checked as the bytes come."""
    chunks = (b"\0" * (1 << 20) for _ in range(21))  # 22 MB, sent chunked: urllib cannot know the length
    status, _, body = request(server.url + "api/colorize", chunks)
    assert status == 413 and "over 20" in json.loads(body)["error"]


def test_too_many_pixels_gets_413(server):
    upload = png_bytes(np.zeros((1500, 1500), np.uint8))  # a few kB, but 2.25 MP > the 2 MP limit
    status, _, body = request(server.url + "api/colorize", upload)
    assert status == 413 and "1500x1500" in json.loads(body)["error"]


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/web/index.html", "/colorgan/serve.py", "/index.html",
                                  "/%2e%2e/%2e%2e/etc/passwd", "/healthz/../serve.py", "/healthz/"])
def test_paths_in_requests_are_never_read(server, path):
    status, headers, body = request(server.url.rstrip("/") + path)
    assert status == 404 and b"root:" not in body and b"import" not in body and json.loads(body)["error"]
    status, _, _ = request(server.url.rstrip("/") + path, b"x")
    assert status in (404, 405)


def test_other_host_names_are_refused(server):
    """A page elsewhere that rebinds its own name to 127.0.0.1 must not reach the API."""
    status, headers, body = request(server.url + "healthz", headers={"Host": "evil.example"})
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert "--allowed_hosts" in json.loads(body)["error"]
    status, _, _ = request(server.url + "api/colorize", png_bytes(np.zeros((8, 8), np.uint8)),
                           {"Host": f"evil.example:{server.port}"})
    assert status == 400
    for host in ("localhost", f"LocalHost:{server.port}", f"[::1]:{server.port}", "photos.test"):
        assert request(server.url + "healthz", headers={"Host": host})[0] == 200, host


def test_conflicting_content_lengths_are_refused(server):
    answer = raw(server.port, b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                              b"Content-Length: 7\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 400")
    assert request(server.url + "healthz")[0] == 200


def test_20_concurrent_clients_all_get_their_own_answer(server):
    """Uploads of different sizes, raw and as forms, all at once: all succeed and none crosses over."""
    astronaut = decode(read_photo("astronaut.png"))
    photos = [astronaut[i:i + 40 + 3 * i, 2 * i:2 * i + 60 + i] for i in range(20)]  # each its own size
    start = threading.Barrier(len(photos), timeout=30)

    def colorize(i):
        upload = png_bytes(photos[i])
        body, headers = form([("file", "x.png", upload)]) if i % 2 else (upload, {})
        start.wait()  # all at once
        return request(server.url + "api/colorize", body, headers, timeout=90)

    with concurrent.futures.ThreadPoolExecutor(len(photos)) as pool:
        answers = list(pool.map(colorize, range(len(photos)), timeout=120))
    assert [status for status, _, _ in answers] == [200] * len(photos)
    for photo, (_, _, body) in zip(photos, answers):
        result = decode(body)
        assert result.shape == photo.shape
        assert np.abs(lightness(result) - lightness(photo)).mean() < 1.0
    assert json.loads(request(server.url + "healthz")[2])["queued"] == 0


def trickle(port):
    """A client that sends its upload a byte at a time, until just before the server's body deadline
    (so that only a deadline for the whole body, not an idle timeout, can stop it), then stalls.
    Returns the server's answer and when it came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        began = time.monotonic()
        connection.sendall(b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        # It stops sending before the 408 can come: a byte sent after it would reset the connection.
        while time.monotonic() < began + BODY_TIMEOUT_S - 0.6 and not select.select([connection], [], [], 0.2)[0]:
            connection.sendall(b"\0")
        select.select([connection], [], [], 15)
        return read_all(connection), time.monotonic() - began


def test_slow_clients_get_408_and_do_not_hold_up_others(server):
    slow_clients = QUEUE_SIZE + 6  # more than there are slots: they must not be holding any
    with concurrent.futures.ThreadPoolExecutor(slow_clients) as pool:
        slow = [pool.submit(trickle, server.port) for _ in range(slow_clients)]
        time.sleep(0.5)
        began = time.monotonic()
        status, _, body = request(server.url + "api/colorize", png_bytes(np.zeros((20, 30), np.uint8)))
        fast_s = time.monotonic() - began
        assert not any(future.done() for future in slow), "the slow clients were answered before the fast one"
        assert status == 200 and decode(body).shape == (20, 30, 3)
        assert json.loads(request(server.url + "healthz")[2])["queued"] == 0
        answers = [future.result(timeout=30) for future in slow]
    print(f"fast client answered in {fast_s:.2f} s while {slow_clients} slow clients trickled")
    for answer, seconds in answers:
        assert answer.startswith(b"HTTP/1.1 408") and b"within 3 s" in answer, answer
        assert BODY_TIMEOUT_S - 0.7 < seconds < BODY_TIMEOUT_S + 5


def test_client_that_leaves_mid_upload_is_one_log_line(server):
    before = len(server.lines)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
                           + b"\0" * 1000)
        time.sleep(0.3)
    wait_until(lambda: any("went away" in line for line in server.lines[before:]), 10, "the log line")
    time.sleep(0.5)  # anything else it logs about it, a traceback say, would come now
    new = server.lines[before:]
    assert len([line for line in new if "went away" in line]) == 1 and "mid-upload" in "\n".join(new)
    assert not any("Traceback" in line or "Error" in line for line in new), new


def chroma(rgb):
    from skimage.color import rgb2lab
    lab = rgb2lab(rgb[..., :3])
    return np.hypot(lab[..., 1], lab[..., 2]).mean()


@pytest.fixture(scope="module")
def vivid_server():
    """An in-process server whose model paints strong colours, so that a change of strength shows."""
    from conftest import vivid_tiny_generator
    from colorgan.inference import load_colorizer
    server = serve.ColorizeServer(load_colorizer(vivid_tiny_generator(32)), port=0, quiet=True,
                                  saturation=1.5).serve_in_background()
    yield server
    server.close()


def test_saturation_scales_the_colour_per_request(vivid_server):
    upload = read_photo("coffee.png")
    answers = {}
    for query in ("", "?saturation=0", "?saturation=1", "?saturation=1.5", "?saturation=3"):
        status, _, body = request(vivid_server.url + "api/colorize" + query, upload)
        assert status == 200, body[:200]
        answers[query] = decode(body)
    original = decode(upload)
    assert json.loads(request(vivid_server.url + "healthz")[2])["saturation"] == 1.5
    np.testing.assert_array_equal(answers[""], answers["?saturation=1.5"])  # the server's --saturation
    as_trained = chroma(answers["?saturation=1"])
    assert as_trained > 3, "the vivid model should paint visible colour"
    assert chroma(answers["?saturation=0"]) < 1.0  # gray
    assert chroma(answers["?saturation=1.5"]) > 1.3 * as_trained
    assert chroma(answers["?saturation=3"]) > chroma(answers["?saturation=1.5"])
    for answer in answers.values():  # only the colour changes: the lightness is the photo's own
        assert np.abs(lightness(answer) - lightness(original)).mean() < 1.0


@pytest.mark.parametrize("value", ["abc", "-0.5", "nan", "inf", "4.5", ""])
def test_bad_saturation_gets_400_with_its_range(vivid_server, value):
    status, headers, body = request(vivid_server.url + f"api/colorize?saturation={value}", read_photo("camera.png"))
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert "saturation must be a number from 0 (gray) to 4" in json.loads(body)["error"]


def test_uploads_never_touch_the_file_system(in_process):
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
    # 3 MB, uncompressed: form parsers spool files over 1 MB to disk (Starlette's does).
    upload = png_bytes(np.tile(decode(read_photo("astronaut.png")), (2, 2, 1)), compress_level=0)
    assert len(upload) > 3_000_000
    watching.set()
    try:
        body, headers = form([("file", "astronaut.png", upload)])
        assert request(in_process.url + "api/colorize", body, headers)[0] == 200
        assert request(in_process.url + "api/colorize", upload)[0] == 200
    finally:
        watching.clear()
    assert written == [], written[:5]


class BlockingColorizer:
    """Stands in for a model that is slow: colorize waits until released."""
    kind, image_size = "fake", 8

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def colorize(self, pixels):
        self.entered.set()
        assert self.release.wait(30)
        return np.zeros(pixels.shape[:2] + (3,), np.uint8)


@pytest.fixture
def blocked():
    """An in-process server whose model blocks; its colorizer and a factory for it."""
    made = []

    def make(**options):
        colorizer = BlockingColorizer()
        made.append((colorizer, serve.ColorizeServer(colorizer, port=0, quiet=True, **options)))
        return colorizer, made[-1][1].serve_in_background()

    yield make
    for colorizer, server in made:
        colorizer.release.set()
        server.close()


SMALL = png_bytes(np.zeros((8, 8), np.uint8))


def test_full_queue_gets_503_and_recovers(blocked):
    colorizer, server = blocked(queue_size=1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(request, server.url + "api/colorize", SMALL)
        assert colorizer.entered.wait(30)
        status, _, body = request(server.url + "api/colorize", SMALL)
        assert status == 503 and "busy" in json.loads(body)["error"]
        colorizer.release.set()
        assert first.result(timeout=30)[0] == 200
    assert request(server.url + "api/colorize", SMALL)[0] == 200  # the slot was given back


def test_photos_past_the_deadline_get_504_or_503(blocked):
    """The one being coloured gets 504, the one still waiting 503; neither waits for the model."""
    colorizer, server = blocked(queue_size=2, colorize_timeout_s=1)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        began = time.monotonic()
        running = pool.submit(request, server.url + "api/colorize", SMALL)
        assert colorizer.entered.wait(30)
        waiting = pool.submit(request, server.url + "api/colorize", SMALL)
        (status_running, _, body_running), (status_waiting, _, body_waiting) = running.result(30), waiting.result(30)
    assert time.monotonic() - began < 10
    assert status_running == 504 and "longer than 1 s" in json.loads(body_running)["error"]
    assert status_waiting == 503 and "turn" in json.loads(body_waiting)["error"]
    colorizer.release.set()
    wait_until(lambda: server.worker.pending == 0, 30, "the worker to finish")
    assert request(server.url + "api/colorize", SMALL)[0] == 200


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_client_that_leaves_while_its_photo_is_coloured_is_one_log_line(blocked):
    colorizer, server = blocked()
    records, logger = Records(), logging.getLogger("uvicorn.error")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)  # the server is --quiet, and this is no problem: it logs at INFO
    try:
        with socket.create_connection(server.server_address, timeout=10) as connection:
            connection.sendall(b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(SMALL), SMALL))
            assert colorizer.entered.wait(30)
        wait_until(lambda: records.records, 10, "the log line")
        colorizer.release.set()
        time.sleep(0.5)  # anything else it logs about it, a traceback say, would come now
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    messages = [record.getMessage() for record in records.records]
    assert len(messages) == 1 and re.fullmatch(r"client 127\.0\.0\.1:\d+ went away while its photo was coloured",
                                               messages[0]), messages
    assert records.records[0].exc_info is None


def test_port_in_use_is_one_clear_error(in_process):
    host, port = in_process.server_address
    with pytest.raises(ColorganError, match="another --port"):
        serve.ColorizeServer(BlockingColorizer(), host, port, quiet=True)


def test_helpfull_lists_the_flags(capsys):
    assert serve.main(["--helpfull"]) == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--host", "--port", "--max_upload_mb", "--max_pixels", "--queue_size",
                 "--body_timeout_s", "--colorize_timeout_s", "--allowed_hosts", "--saturation", "--[no]quiet"):
        assert flag in out


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--queue_size", "0"], ["--saturation", "-1"],
                                  ["--saturation", "9"], ["--no_such_flag"], ["photo.jpg"]])
def test_bad_flags_exit_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve.main(argv)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and error.startswith("error:") and "\n" not in error


def shipped_model_home():
    """The module whose DEFAULT_GENERATOR names the shipped model (it moved to colorgan.saving)."""
    try:
        from colorgan import saving
        return saving
    except ImportError:
        from colorgan import models
        return models


def test_without_model_or_shipped_model_exits_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shipped_model_home(), "DEFAULT_GENERATOR", tmp_path / "default.keras")
    with pytest.raises(SystemExit) as exit_info:
        serve.main([])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--model" in error and "\n" not in error
    with pytest.raises(SystemExit):
        serve.main(["--model", str(tmp_path / "missing.keras")])
    assert "missing.keras" in capsys.readouterr().err


@pytest.fixture
def uvicorn_logging():
    """main() configures uvicorn's loggers for a terminal (here: capsys's); put them back afterwards."""
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    yield
    for logger, (handlers, propagate, level) in zip(loggers, saved):
        logger.handlers[:], logger.propagate, logger.level = handlers, propagate, level


@pytest.mark.parametrize("given", [True, False], ids=["model_flag", "shipped_model"])
def test_main_serves_until_interrupted(given, model_path, monkeypatch, capsys, uvicorn_logging):
    """The entry point in-process (to spare another TensorFlow start): it loads the model (--model, or the
    shipped one without it), says where it listens, answers there, and shuts down cleanly on Ctrl-C."""
    monkeypatch.setattr(shipped_model_home(), "DEFAULT_GENERATOR", model_path)
    real_serve_forever, answers = serve.ColorizeServer.serve_forever, []

    def serve_then_interrupt(server):
        thread = threading.Thread(target=real_serve_forever, args=(server,))
        thread.start()
        try:
            wait_until(lambda: server.uvicorn.started, 30, "the server to start")
            answers.append(request(server.url + "healthz")[0])
        finally:
            server.uvicorn.should_exit = True
            thread.join(30)
        raise KeyboardInterrupt

    monkeypatch.setattr(serve.ColorizeServer, "serve_forever", serve_then_interrupt)
    serve.main((["--model", str(model_path)] if given else []) + ["--port", "0", "--quiet"])
    assert answers == [200]
    served = r".*g\.keras" if given else "the shipped colorizer"
    assert re.search(rf"serving {served} at http://127\.0\.0\.1:\d+/", capsys.readouterr().err)


def test_ctrl_c_stops_the_server_process_cleanly(server):
    """Last, as it stops the shared server process: exit status 0, an access log, and no traceback."""
    assert request(server.url + "healthz")[0] == 200
    assert request(server.url + "api/colorize", b"\0" * (20_000_000 + 1))[0] == 413
    assert server.stop() == 0
    log = "\n".join(server.lines)
    assert '"GET /healthz HTTP/1.1" 200' in log and '"POST /api/colorize HTTP/1.1" 413' in log
    assert "Traceback" not in log, log[-3000:]
