"""`colorgan serve`: a local web page and HTTP API to try a colorizer.

    colorgan serve                                  # the shipped model; then open http://127.0.0.1:8000/
    colorgan serve --model runs/quickstart          # a model of your own
    curl --data-binary @cat.jpg http://127.0.0.1:8000/api/colorize -o cat-colour.png

Routes (exact paths only; nothing in a request is ever used as a file path):
    GET  /               the page (one self-contained HTML file, no external scripts, fonts or CDNs)
    POST /api/colorize   image bytes as the body -> PNG of the same size; errors are JSON {"error": ...}
    GET  /healthz        JSON status

Memory stays bounded: at most `queue_size` requests are in flight (each holding at most
`max_upload_mb` of bytes; more get 503 at once), photos above `max_pixels` are refused before they
are decoded, and one worker thread decodes, colours and encodes one photo at a time. Uploads stay in
memory and never touch the file system.
"""
import argparse
import concurrent.futures
import http.server
import importlib.resources
import io
import json
import queue
import sys
import threading
import urllib.parse

import numpy as np

from colorgan.errors import ColorganError, exit_on_user_error

DEFAULT_MAX_UPLOAD_MB = 20
# A 50 MP photo needs a few GB while it is coloured at full resolution; larger ones are refused.
DEFAULT_MAX_PIXELS = 50_000_000
# Enough for 50 simultaneous uploads; beyond it the server answers 503 instead of queueing more.
DEFAULT_QUEUE_SIZE = 64


def load_page():
    return importlib.resources.files("colorgan").joinpath("web/index.html").read_bytes()


def image_size_of(contents):
    """(width, height) from an image's header, without decoding its pixels."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(contents)) as image:
            return image.size
    except Image.UnidentifiedImageError:  # its message names a BytesIO object, which helps nobody
        raise ColorganError("the upload is not an image in a format colorgan reads; "
                            "send a JPEG or PNG") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ColorganError(f"the upload is not an image colorgan can read ({e}); "
                            "send a JPEG or PNG") from None


def encode_png(rgb, icc_profile=None):
    from PIL import Image
    buffer = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    # Level 1: the PNG goes over localhost, so speed matters more than a smaller file.
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", compress_level=1, **options)
    return buffer.getvalue()


class Worker:
    """One thread that owns the model: TF work is serialised and only one photo is decoded at a time."""

    def __init__(self, colorizer):
        self.colorizer = colorizer
        # Unbounded on purpose: the server's in-flight limit already bounds how many jobs can wait here.
        self.jobs = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="colorgan-model", daemon=True)
        self.thread.start()

    def submit(self, contents):
        """Image bytes -> a Future of PNG bytes, or of a ColorganError for an image that cannot be read."""
        future = concurrent.futures.Future()
        self.jobs.put((contents, future))
        return future

    def _run(self):
        from colorgan.inference import decode_photo
        while (job := self.jobs.get()) is not None:
            contents, future = job
            try:
                photo = decode_photo(contents, name="the upload")
                # Encoded here too, so that only one full-size photo is ever in memory, not one per request.
                future.set_result(encode_png(self.colorizer.colorize(photo.pixels), photo.icc_profile))
            except Exception as e:  # the handler reports it; the worker must survive any one photo
                future.set_exception(e)

    def close(self):
        self.jobs.put(None)
        self.thread.join()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # needed for `Expect: 100-continue`, so curl hears 413 before uploading
    server_version = "colorgan"
    timeout = 60                    # a client that stalls mid-request does not hold its thread forever

    def do_GET(self):
        route = urllib.parse.urlsplit(self.path).path
        if route in ("/", "/index.html"):
            self.send(200, self.server.page, "text/html; charset=utf-8")
        elif route == "/healthz":
            self.send_json(200, self.server.health())
        else:
            self.send_error_json(404, f"no page at {route}; try / or /healthz")

    def do_POST(self):
        route = urllib.parse.urlsplit(self.path).path
        length = self.content_length()
        if length is None:
            return
        if route != "/api/colorize":
            return self.refuse(length, 404, f"nothing to POST at {route}; POST images to /api/colorize")
        if length > self.server.max_upload_bytes:
            return self.refuse(length, 413, self.too_large_message(length))
        if self.headers.get("Content-Type", "").startswith("multipart/"):
            return self.refuse(length, 400, "send the image bytes as the request body "
                                            "(curl --data-binary @photo.jpg), not as a form")
        if not self.server.slots.acquire(blocking=False):
            return self.refuse(length, 503, "the server is busy; try again in a moment")
        try:
            self.colorize(length)
        finally:
            self.server.slots.release()

    def refuse(self, length, status, message):
        """Answer without using the body. A moderately sized body is read and dropped first, so the
        client hears the answer instead of a connection reset; a wildly oversized one is cut off."""
        if length <= 4 * self.server.max_upload_bytes:
            while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
                length -= len(chunk)
        self.send_error_json(status, message, close=True)

    def colorize(self, length):
        contents = self.rfile.read(length)
        if len(contents) != length:
            return self.send_error_json(400, "the upload ended early; send the whole file", close=True)
        try:
            width, height = image_size_of(contents)
        except ColorganError as e:
            return self.send_error_json(400, str(e))
        if width * height > self.server.max_pixels:
            return self.send_error_json(413, f"the photo is {width}x{height} ({width * height / 1e6:.1f} MP); "
                                             f"this server colours at most {self.server.max_pixels / 1e6:g} MP")
        try:
            png = self.server.worker.submit(contents).result()
        except ColorganError as e:
            return self.send_error_json(400, str(e))
        except Exception as e:
            self.log_error("colorizing failed: %r", e)
            return self.send_error_json(500, f"colorizing failed ({type(e).__name__}); see the server log")
        self.send(200, png, "image/png")

    def handle_expect_100(self):
        # Refuse an oversized upload before the client sends it (curl asks first for large bodies).
        length = self.content_length()
        if length is None:
            return False
        if length > self.server.max_upload_bytes:
            self.send_error_json(413, self.too_large_message(length), close=True)
            return False
        return super().handle_expect_100()

    def content_length(self):
        """The declared body length, or None after answering 411 when it is missing or bad."""
        if self.headers.get("Transfer-Encoding"):
            self.send_error_json(411, "send a Content-Length; chunked uploads are not supported", close=True)
            return None
        value = self.headers.get("Content-Length", "")
        if value.isascii() and value.isdigit():
            return int(value)
        self.send_error_json(411, "send the image as the request body with a valid Content-Length", close=True)
        return None

    def too_large_message(self, length):
        return (f"the upload is {length / 1e6:.1f} MB; this server takes at most "
                f"{self.server.max_upload_bytes / 1e6:g} MB per photo")

    def send(self, status, body, content_type, close=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            # The page must work offline: the browser itself refuses anything not inline or from here.
            self.send_header("Content-Security-Policy",
                             "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                             "img-src 'self' blob: data:; connect-src 'self'")
        if close:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, payload, close=False):
        self.send(status, json.dumps(payload).encode(), "application/json", close=close)

    def send_error_json(self, status, message, close=False):
        self.send_json(status, {"error": message}, close=close)

    def log_request(self, code="-", size="-"):
        if not self.server.quiet:  # errors are logged all the same
            super().log_request(code, size)


class ColorizeServer(http.server.ThreadingHTTPServer):
    """The HTTP server and its model worker; `close()` stops both."""
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of connections must wait, not be reset

    def __init__(self, colorizer, host="127.0.0.1", port=8000, max_upload_mb=DEFAULT_MAX_UPLOAD_MB,
                 max_pixels=DEFAULT_MAX_PIXELS, queue_size=DEFAULT_QUEUE_SIZE, quiet=False):
        self.colorizer = colorizer
        self.max_upload_bytes = int(max_upload_mb * 1_000_000)
        self.max_pixels = int(max_pixels)
        self.queue_size = queue_size
        self.slots = threading.BoundedSemaphore(queue_size)
        self.page = load_page()
        self.quiet = quiet
        try:
            super().__init__((host, port), Handler)
        except OSError as e:
            raise ColorganError(f"cannot listen on {host}:{port} ({e.strerror or e}); check --host, "
                                "or pick another --port if that one is in use") from None
        self.worker = Worker(colorizer)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def health(self):
        return {"status": "ok", "model": self.colorizer.kind, "image_size": self.colorizer.image_size,
                "max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                "queued": self.worker.jobs.qsize()}

    def serve_in_background(self):
        """Serve from a daemon thread (for tests and embedding); `close()` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, name="colorgan-http", daemon=True)
        self._thread.start()
        return self

    def close(self):
        if getattr(self, "_thread", None):
            self.shutdown()  # only when serving: shutdown() waits for serve_forever to return
            self._thread.join()
        self.server_close()
        self.worker.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="colorgan serve", description="Serve a web page to try a colorizer.")
    parser.add_argument("--model", help="training run dir, .keras file, SavedModel dir or .tflite file "
                                        "(default: the colorizer shipped with colorgan)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--max_upload_mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help="largest upload accepted, in MB; larger ones get 413 (default: %(default)s)")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="largest photo accepted, in pixels; larger ones get 413 (default: %(default)s)")
    parser.add_argument("--queue_size", type=int, default=DEFAULT_QUEUE_SIZE,
                        help="requests in flight at once; more get 503 (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535 (0: any free port)")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0 or args.queue_size <= 0:
        parser.error("--max_upload_mb, --max_pixels and --queue_size must be positive")
    return args


@exit_on_user_error
def main(argv=None):
    """`colorgan serve [flags]`; argv is the flags after `serve` (sys.argv[1:] when None)."""
    args = parse_args(argv)
    from colorgan.inference import load_colorizer
    colorizer = load_colorizer(args.model)
    colorizer.colorize(np.zeros((8, 8, 1), np.uint8))  # trace now, not on the first request
    server = ColorizeServer(colorizer, args.host, args.port, args.max_upload_mb, args.max_pixels,
                            args.queue_size, quiet=args.quiet)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}, so other machines can reach this server", file=sys.stderr)
    print(f"colorgan: serving {args.model or 'the shipped colorizer'} at {server.url} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
