"""`colorgan serve`: a local web page and HTTP API to try a colorizer (FastAPI on uvicorn).

    colorgan serve                                  # the shipped model; then open http://127.0.0.1:8000/
    colorgan serve --model runs/quickstart          # a model of your own
    curl --data-binary @cat.jpg http://127.0.0.1:8000/api/colorize -o cat-colour.png
    curl -F file=@cat.jpg http://127.0.0.1:8000/api/colorize -o cat-colour.png
    curl --data-binary @cat.jpg 'http://127.0.0.1:8000/api/colorize?saturation=1.25' -o livelier.png
    curl -F file=@cat.jpg -F hints=@hints.json http://127.0.0.1:8000/api/colorize -o hinted.png
    colorgan serve --helpfull                       # every flag

Routes (exact paths only; nothing in a request is ever used as a file path):
    GET  /               the page (one self-contained HTML file, no external scripts, fonts or CDNs)
    POST /api/colorize   image bytes as the body, or a form with a `file` field -> PNG of the same size;
                         `?saturation=S` scales this photo's colour (default: --saturation); colour hints
                         for a model trained with them, as the JSON of colorgan/hints.py, in `?hints=` or
                         a form field `hints` (a bad hint: 400 naming it)
    GET  /healthz        JSON status
    GET  /docs           OpenAPI docs (Swagger UI; its scripts come from a CDN, unlike the page's)
Every error is JSON {"error": "..."}. The colours are the model's, the lightness is the photo's own,
EXIF orientation is followed and an ICC profile is copied onto the PNG.

Limits, so that no client can exhaust the machine or hold up the others (GET /healthz lists them, and
the OpenAPI description at /docs):
  * Host headers other than 127.0.0.1, localhost, [::1], --host and --allowed_hosts get 400 (so a web
    page elsewhere cannot reach this server through DNS rebinding). The default --host is 127.0.0.1.
  * Connections: a request's line and headers must arrive within --header_timeout_s (10) of the
    connection or of the previous answer, and hold at most 16 kB (400), else the connection is closed;
    a keep-alive connection idle 5 s after an answer is closed. Past --max_connections (1000), the
    oldest connections not in the middle of a request make room for new ones. A body that arrives in
    more than 100,000 pieces, or 10,000 averaging under 512 bytes (one-byte HTTP chunks), gets 400.
    What a connection sends is parsed 4 kB at a time, the others served in between.
  * Forms and image headers are read by 2 worker threads, never on the event loop, as many waiting as
    there are --queue_size slots (else 503). A form of more than 16 parts, or a part header over 16 kB,
    gets 400; so do PNG, JPEG, GIF and TIFF files with more chunks, segments, blocks or pages than any
    real photo (payload.check_structure: PIL took 9 s to open a 14 MB PNG of a million empty chunks).
  * A body must arrive whole within --body_timeout_s, else 408; uploads over --max_upload_mb get 413
    (from Content-Length at once, or while a chunked body streams). Bodies stay in memory (never on
    disk), at most --queue_size x --max_upload_mb bytes of them at once; beyond that, 503.
  * Only a fully received upload takes one of --queue_size slots (503 when all are taken). One
    worker thread decodes, colours and encodes one photo at a time, so TF work is serialised.
  * Photos over --max_pixels get 413 from their header, before they are decoded. The default, 16 MP,
    takes 12 MP phone photos and bounds the work per request: with the shipped model on 2 CPU cores
    that a training run was also using, decode + colour + PNG took 3 s at 4 MP, 11 s at 16 MP and
    16 s at 24 MP (idle cores: about half). A photo not answered within --colorize_timeout_s gets 503
    if it never got its turn, or 504 if it was being coloured (the worker finishes it regardless).
"""
import asyncio
import concurrent.futures
import contextlib
import importlib.resources
import logging
import os
import sys
import threading
import time

import numpy as np
import uvicorn
from absl import flags
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from colorgan.errors import ColorganError, exit_on_user_error
from colorgan.http_parts import (MAX_FORM_PARTS, Guard, Refusal, Worker, error_response, form_file, guarded_protocol,
                                 image_size_of, listen)

DEFAULT_MAX_UPLOAD_MB = 20
DEFAULT_MAX_PIXELS = 16_000_000      # why this number: see the module docstring
DEFAULT_QUEUE_SIZE = 64
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_COLORIZE_TIMEOUT_S = 60.0
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
IDLE_TIMEOUT_S = 5.0           # a keep-alive connection silent this long after an answer is closed
MAX_HEADER_BYTES = 16 * 1024   # a request line and headers larger than this get 400 (h11)
PARSE_WORKERS = 2              # threads that read forms and image headers, off the event loop
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MAX_SATURATION = 4.0  # beyond it nearly every colour is clipped at the model's range anyway
BUSY = "the server is busy; try again in a moment"
# On every answer: nothing is cached (photos are private), and browsers must not guess content types.
# The page must work offline: the browser itself refuses anything not inline or from here.
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src 'self' blob: data:; connect-src 'self'")
UPLOAD_BODY = {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"},
                                                      "hints": {"type": "string", "description": "colour hints, "
                                                                "as the hints JSON (colorgan/hints.py)"}}}}}}
HINTS_PARAMETER = {"name": "hints", "in": "query", "required": False,
                   "description": "colour hints (a model trained with them): JSON {\"points\": [{\"x\": X, \"y\": Y, "
                                  "\"color\": \"#rrggbb\"}, ...]}, points in the photo's pixels; or a form field",
                   "schema": {"type": "string"}}
MAX_HINTS_BYTES = 100_000  # 64 points take a few kB
SATURATION_PARAMETER = {"name": "saturation", "in": "query", "required": False,
                        "description": "colour strength: the model's a*b* times this (1: as trained, 0: gray; "
                                       "default: the server's --saturation)",
                        "schema": {"type": "number", "minimum": 0, "maximum": MAX_SATURATION}}
log = logging.getLogger("uvicorn.error")  # uvicorn's own logger, so that our lines look like its


def define_flags(fv):
    """`colorgan serve`'s flags, on the FlagValues `fv`."""
    on = {"flag_values": fv}
    flags.DEFINE_string("model", None, "Training run dir, .keras file, SavedModel dir or .tflite file "
                        "(default: the colorizer shipped with colorgan).", **on)
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; a non-loopback one lets other machines in.", **on)
    flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port).", 0, 65535, **on)
    flags.DEFINE_float("max_upload_mb", DEFAULT_MAX_UPLOAD_MB, "Largest upload, in MB; larger get 413.", **on)
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Largest photo, in pixels; larger get 413.", **on)
    flags.DEFINE_integer("queue_size", DEFAULT_QUEUE_SIZE, "Uploads waiting or being coloured; more get 503.", **on)
    flags.DEFINE_float("body_timeout_s", DEFAULT_BODY_TIMEOUT_S, "Seconds a client has to send its whole upload; "
                       "slower ones get 408.", **on)
    flags.DEFINE_float("colorize_timeout_s", DEFAULT_COLORIZE_TIMEOUT_S, "Seconds from a whole upload to its "
                       "answer; later gets 503 (never started) or 504 (too slow).", **on)
    flags.DEFINE_float("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S, "Seconds a client has to send a request's "
                       "headers, from its connection or its previous answer; slower ones are disconnected.", **on)
    flags.DEFINE_integer("max_connections", DEFAULT_MAX_CONNECTIONS, "Open connections; past this many, the "
                         "oldest idle ones are closed to make room.", **on)
    flags.DEFINE_list("allowed_hosts", [], "Host header names to answer (e.g. this machine's name) besides "
                      "localhost and --host; '*' answers any.", **on)
    flags.DEFINE_float("saturation", 1.0, "Colour strength when a request names none: the model's a*b* times "
                       "this (1: as trained, 0: gray); ?saturation= overrides it per request.", **on)
    flags.DEFINE_bool("quiet", False, "Log only problems, not every request.", **on)
    flags.register_validator("saturation", lambda value: 0.0 <= value <= MAX_SATURATION,
                             f"--saturation must be from 0 (gray) to {MAX_SATURATION:g}", **on)
    for name in ("max_upload_mb", "max_pixels", "queue_size", "body_timeout_s", "colorize_timeout_s",
                 "header_timeout_s", "max_connections"):
        flags.register_validator(name, lambda value: value > 0, f"--{name} must be positive", **on)


class ColorizeServer:
    """The web app, its uvicorn server and its model worker; `close()` stops them all."""

    def __init__(self, colorizer, host="127.0.0.1", port=8000, max_upload_mb=DEFAULT_MAX_UPLOAD_MB,
                 max_pixels=DEFAULT_MAX_PIXELS, queue_size=DEFAULT_QUEUE_SIZE,
                 body_timeout_s=DEFAULT_BODY_TIMEOUT_S, colorize_timeout_s=DEFAULT_COLORIZE_TIMEOUT_S,
                 allowed_hosts=(), quiet=False, saturation=1.0, header_timeout_s=DEFAULT_HEADER_TIMEOUT_S,
                 max_connections=DEFAULT_MAX_CONNECTIONS):
        """Logs to uvicorn's loggers, "uvicorn.error" and "uvicorn.access"; see `log_to_terminal`.
        `saturation` is the colour strength of requests that name none (see inference.SaturatedColorizer)."""
        if not 0.0 <= saturation <= MAX_SATURATION:
            raise ColorganError(f"--saturation must be from 0 (gray) to {MAX_SATURATION:g}, got {saturation}")
        check_limits(max_upload_mb, max_pixels, queue_size, max_connections)
        self.colorizer, self.saturation = colorizer, float(saturation)
        self.max_upload_bytes = int(max_upload_mb * 1_000_000)
        self.max_pixels, self.queue_size = int(max_pixels), int(queue_size)
        self.body_timeout_s, self.colorize_timeout_s = body_timeout_s, colorize_timeout_s
        self.buffered, self.max_buffered = 0, self.queue_size * self.max_upload_bytes  # bytes of bodies held
        self.page = importlib.resources.files("colorgan").joinpath("web/index.html").read_bytes()
        bound = host.lower() if ":" not in host or host.startswith("[") else f"[{host.lower()}]"
        self.allowed_hosts = {*LOCAL_HOSTS, *(h.lower() for h in allowed_hosts)} | (
            set() if bound in ("0.0.0.0", "[::]") else {bound})
        self.header_timeout_s, self.max_connections = float(header_timeout_s), int(max_connections)
        self.socket = listen(host, port)
        self.worker = Worker(colorizer, self.queue_size)
        # Forms and image headers are read here, not on the event loop: a hostile one cannot hold up the
        # others' answers. As many may wait as there are queue slots; more get 503.
        self.parser = concurrent.futures.ThreadPoolExecutor(PARSE_WORKERS, thread_name_prefix="colorgan-parse")
        self.parse_slots = threading.BoundedSemaphore(self.queue_size)
        self._thread = None
        config = uvicorn.Config(self.build_app(), http=guarded_protocol(self.header_timeout_s, self.max_connections),
                                loop="asyncio", lifespan="off", log_config=None,
                                log_level="warning" if quiet else "info", access_log=not quiet,
                                server_header=False, timeout_keep_alive=IDLE_TIMEOUT_S,
                                h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=5)
        self.uvicorn = uvicorn.Server(config)

    @property
    def takes_hints(self):
        return getattr(self.colorizer, "takes_hints", False)

    @property
    def server_address(self):
        return self.socket.getsockname()[:2]

    @property
    def url(self):
        host, port = self.server_address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    async def health(self):
        from colorgan import hints
        return {"status": "ok", "model": self.colorizer.kind, "image_size": self.colorizer.image_size,
                "hints": self.takes_hints, "max_hints": hints.MAX_POINTS,
                "saturation": self.saturation, "max_saturation": MAX_SATURATION,
                "max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels, "queued": self.worker.pending,
                "limits": self.limits()}

    def limits(self):
        """What this server allows a client: the figures of the module docstring, as they are set."""
        return {"body_timeout_s": self.body_timeout_s, "colorize_timeout_s": self.colorize_timeout_s,
                "header_timeout_s": self.header_timeout_s, "idle_timeout_s": IDLE_TIMEOUT_S,
                "max_header_bytes": MAX_HEADER_BYTES, "max_connections": self.max_connections,
                "max_form_parts": MAX_FORM_PARTS, "queue_size": self.queue_size, "parse_workers": PARSE_WORKERS,
                "model_workers": 1}

    def build_app(self):
        app = FastAPI(title="colorgan", summary="Colourise black-and-white photos.", redoc_url=None,
                      description=self.limits_text(), swagger_ui_oauth2_redirect_url=None, redirect_slashes=False)
        app.add_middleware(Guard, allowed_hosts=self.allowed_hosts)
        app.add_exception_handler(HTTPException, self.http_error)
        app.add_api_route("/", self.page_route, methods=["GET"], include_in_schema=False)
        app.add_api_route("/healthz", self.health, methods=["GET"], summary="Status and limits")
        app.add_api_route("/api/colorize", self.colorize, methods=["POST"], response_class=Response,
                          summary="Colourise a photo",
                          openapi_extra={"requestBody": UPLOAD_BODY,
                                         "parameters": [SATURATION_PARAMETER, HINTS_PARAMETER]},
                          responses={200: {"content": {"image/png": {}}, "description": "the colourised PNG"}})
        return app

    def limits_text(self):
        """The limits, for the OpenAPI description (/docs)."""
        return (f"Limits, so that no client can hold up the others: request headers within "
                f"{self.header_timeout_s:g} s of connecting or of the previous answer, at most "
                f"{MAX_HEADER_BYTES // 1024} kB; idle keep-alive connections closed after {IDLE_TIMEOUT_S:g} s; at most "
                f"{self.max_connections} connections (the oldest idle ones make room); an upload of at most "
                f"{self.max_upload_bytes / 1e6:g} MB arriving within {self.body_timeout_s:g} s (else 413, 408); a form "
                f"of at most {MAX_FORM_PARTS} parts (else 400); at most {self.max_pixels / 1e6:g} MP, read from the "
                f"image header (else 413); image files with more chunks, segments or pages than any real photo get "
                f"400. Forms and image headers are read by {PARSE_WORKERS} worker threads and photos coloured by one, "
                f"with {self.queue_size} slots for uploads waiting (else 503); an answer within "
                f"{self.colorize_timeout_s:g} s (else 503 or 504). /healthz lists the figures.")

    async def page_route(self):
        return Response(self.page, media_type="text/html; charset=utf-8",
                        headers={"content-security-policy": PAGE_CSP})

    async def http_error(self, request, exc):
        path = request.url.path
        message = {404: f"no page at {path}; try /, /docs, /healthz or POST /api/colorize",
                   405: f"{request.method} is not allowed at {path}"}.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, message, exc.headers)

    async def colorize(self, request: Request):
        """Image bytes as the body, or a form with the photo as `file` -> a PNG of the same size."""
        chunks = []  # this upload's bytes, counted against the memory budget until it is answered
        try:
            contents = await self.receive_upload(request, chunks)
            fields = {}
            contents = await self.parse(contents, request.headers.get("content-type", ""), fields)
            saturation = self.saturation_of(request)
            hints = self.hints_of(request, fields)
            if (future := self.worker.try_submit(contents, saturation, hints)) is None:
                raise Refusal(503, BUSY)
            return Response(await self.wait_for(request, future), media_type="image/png")
        except Refusal as refusal:
            return refusal.response()
        except ClientDisconnect as e:  # mid-upload (from Starlette), or later (from wait_for)
            received = sum(map(len, chunks)) / 1e6
            log.info("%s went away %s", client_of(request), str(e) or f"mid-upload ({received:.1f} MB received)")
            return error_response(400, "the client went away")  # nobody hears it: uvicorn drops it
        except ColorganError as e:
            return error_response(400, str(e))
        except Exception as e:
            log.error("colorizing failed: %r", e)
            return error_response(500, f"colorizing failed ({type(e).__name__}); see the server log")
        finally:
            self.buffered -= sum(map(len, chunks))

    def hints_of(self, request, fields):
        """The request's colour hints (?hints= or the form field `hints`), checked; None without any."""
        from colorgan import hints
        text = fields.get("hints", request.query_params.get("hints"))
        if text is None or not text.strip():
            return None
        if len(text) > MAX_HINTS_BYTES:
            raise Refusal(400, f"the hints are over {MAX_HINTS_BYTES // 1000} kB; a photo takes at most "
                               f"{hints.MAX_POINTS} points")
        document = hints.loads(text, "hints")  # malformed: a ColorganError, answered 400
        if document["points"] and not self.takes_hints:
            raise Refusal(400, "this server's model takes no colour hints; serve one trained with them "
                               "(colorgan serve --model=...)")
        return document

    def saturation_of(self, request):
        """The request's ?saturation=, else the server's."""
        text = request.query_params.get("saturation")
        if text is None:
            return self.saturation
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= MAX_SATURATION:  # also refuses NaN and inf
            raise Refusal(400, f"saturation must be a number from 0 (gray) to {MAX_SATURATION:g}, "
                               f"1 being the model's own colour; got {text!r}")
        return value

    async def receive_upload(self, request, chunks):
        """The whole body, within the body deadline and the size and memory limits."""
        length = request.headers.get("content-length")
        length = int(length) if length is not None else None  # h11 has already checked that it is digits
        if length is not None and length > self.max_upload_bytes:
            await self.refuse_body(request, Refusal(413, self.too_large(length), close=True), length)
        if self.worker.full():  # no slot is taken yet, but one is unlikely to come free during the upload
            await self.refuse_body(request, Refusal(503, BUSY, close=True), length or 0)
        try:
            size = await asyncio.wait_for(self.read_body(request, chunks), self.body_timeout_s)
        except asyncio.TimeoutError:
            raise Refusal(408, f"the upload did not arrive within {self.body_timeout_s:g} s; "
                               "send it on a faster connection", close=True) from None
        if size > self.max_upload_bytes:  # a chunked body, which declared no length
            self.buffered -= sum(map(len, chunks))
            chunks.clear()
            await self.refuse_body(request, Refusal(413, self.too_large(size, True), close=True), size, size)
        chunks[:] = [b"".join(chunks)]  # one copy of the body in memory, not two
        return chunks[0]

    async def read_body(self, request, chunks):
        """Appends the body's chunks to `chunks`; returns its size, or a size over the limit at once."""
        size = 0
        async for chunk in request.stream():
            if (size := size + len(chunk)) > self.max_upload_bytes:
                return size
            self.buffered += len(chunk)
            chunks.append(chunk)
            if self.buffered > self.max_buffered:
                raise Refusal(503, BUSY, close=True)
        return size

    async def refuse_body(self, request, refusal, size, received=0):
        """Raise `refusal`, having first read and dropped the rest of a body of `size` bytes if that is at
        most 4x the limit: the connection is closed after the answer, and closing it on unread bytes
        would reset it before the client could read the answer. A client still waiting for `100 Continue`
        (curl, for large files) hears the answer before it sends anything."""
        waiting = received == 0 and request.headers.get("expect", "").lower() == "100-continue"
        if not waiting and size <= 4 * self.max_upload_bytes:
            async def discard(left):
                async for chunk in request.stream():
                    if (left := left - len(chunk)) < 0:
                        return
            with contextlib.suppress(asyncio.TimeoutError, ClientDisconnect):  # refused all the same
                await asyncio.wait_for(discard(4 * self.max_upload_bytes - received), self.body_timeout_s)
        raise refusal

    async def parse(self, contents, content_type, fields):
        """photo_from in a parse worker: a form of 300,000 fields or a PNG of a million chunks costs
        milliseconds there before it is refused, and never the event loop's time."""
        if not self.parse_slots.acquire(blocking=False):
            raise Refusal(503, BUSY)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.parser, self.photo_from, contents,
                                                                    content_type, fields)
        finally:
            self.parse_slots.release()

    def photo_from(self, contents, content_type, fields=None):
        """The image in an upload, after checking its size from its header; a form's other fields go to
        ``fields``."""
        if content_type.lower().startswith("multipart/form-data"):
            contents = form_file(content_type, contents, fields)
        try:
            width, height = image_size_of(contents)
        except ColorganError as e:
            raise Refusal(400, str(e)) from None
        if width * height > self.max_pixels:
            raise Refusal(413, f"the photo is {width}x{height} ({width * height / 1e6:.1f} MP); this server "
                               f"colours at most {self.max_pixels / 1e6:g} MP (--max_pixels)")
        return contents

    async def wait_for(self, request, future):
        """The PNG from the worker, unless the deadline passes or the client leaves first."""
        answer, gone = asyncio.wrap_future(future), asyncio.ensure_future(disconnected(request))
        try:
            done, _ = await asyncio.wait({answer, gone}, timeout=self.colorize_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if answer in done:
            return answer.result()
        started = not future.cancel()  # a photo still waiting for its turn never starts
        answer.cancel()  # what the worker still makes of it is dropped
        if gone in done:
            raise ClientDisconnect("while its photo was " + ("coloured" if started else "waiting"))
        if started:
            raise Refusal(504, f"colouring took longer than {self.colorize_timeout_s:g} s; send a smaller photo")
        raise Refusal(503, f"the photo did not get its turn within {self.colorize_timeout_s:g} s; " + BUSY)

    def too_large(self, size, at_least=False):
        return (f"the upload is {'over ' if at_least else ''}{size / 1e6:.1f} MB; this server takes at most "
                f"{self.max_upload_bytes / 1e6:g} MB per photo (--max_upload_mb)")

    def serve_forever(self):
        self.uvicorn.run(sockets=[self.socket])

    def serve_in_background(self):
        """Serve from a daemon thread (for tests and embedding); `close()` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, name="colorgan-http", daemon=True)
        self._thread.start()
        for _ in range(3000):  # 30 s at most
            if self.uvicorn.started or not self._thread.is_alive():
                break
            time.sleep(0.01)
        if not self.uvicorn.started:
            raise RuntimeError("the server did not start; see the log")
        return self

    def close(self):
        if self._thread is not None:
            self.uvicorn.should_exit = True
            self._thread.join(timeout=30)
        self.socket.close()
        self.parser.shutdown(wait=False, cancel_futures=True)
        self.worker.close()


def check_limits(max_upload_mb, max_pixels, queue_size, max_connections):
    """Refuse limits this machine cannot keep: the bodies held at once (every queue slot full) and one
    photo being coloured must fit in memory, and every connection needs a file descriptor."""
    from colorgan import memory
    bodies = int(queue_size * max_upload_mb * 1_000_000)
    memory.refuse_over(bodies + max_pixels * memory.COLOUR_BYTES_PER_PIXEL,
                       f"--queue_size={queue_size} uploads of --max_upload_mb={max_upload_mb:g} and a photo of "
                       f"--max_pixels={max_pixels}", "lower them")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + 64  # the model, the logs and Python's own files
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard == resource.RLIM_INFINITY or hard >= wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        else:
            raise ColorganError(f"--max_connections={max_connections} needs {wanted} open files, and this process may "
                                f"have at most {hard} (ulimit -n); pass --max_connections={max(1, hard - 64)} or less")


async def disconnected(request):
    """Returns once the client has hung up (uvicorn's receive() says so once the body is in)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def client_of(request):
    return "client {}:{}".format(*request.client) if request.client else "a client"


def log_to_terminal():
    """uvicorn's log lines as uvicorn itself prints them. Set up by hand: logging.config, which uvicorn
    would use, first closes every handler there is, absl's and any embedding program's included."""
    from uvicorn.logging import AccessFormatter, DefaultFormatter
    access = AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s')
    for name, stream, formatter in [("uvicorn", sys.stderr, DefaultFormatter("%(levelprefix)s %(message)s")),
                                    ("uvicorn.access", sys.stdout, access)]:
        (handler := logging.StreamHandler(stream)).setFormatter(formatter)
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = [handler], False


def run(fv, args):
    """Serve with the parsed flags `fv` until Ctrl-C; returns the exit status."""
    if args:
        raise ColorganError(f"unexpected argument {args[0]!r}; colorgan serve takes only --flags")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter out of the log
    from colorgan.inference import load_colorizer
    check_limits(fv.max_upload_mb, fv.max_pixels, fv.queue_size, fv.max_connections)  # before the model loads
    colorizer = load_colorizer(fv.model)
    colorizer.colorize(np.zeros((8, 8, 1), np.uint8))  # trace now, not on the first request
    log_to_terminal()
    server = ColorizeServer(colorizer, fv.host, fv.port, fv.max_upload_mb, fv.max_pixels, fv.queue_size,
                            fv.body_timeout_s, fv.colorize_timeout_s, fv.allowed_hosts, quiet=fv.quiet,
                            saturation=fv.saturation, header_timeout_s=fv.header_timeout_s,
                            max_connections=fv.max_connections)
    if fv.host.strip("[]") not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {fv.host}, so other machines can reach this server; they must "
              "use a name in --allowed_hosts", file=sys.stderr)
    print(f"colorgan: serving {fv.model or 'the shipped colorizer'} at {server.url} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C, then raises it again
        pass
    finally:
        server.close()
    return 0


@exit_on_user_error
def main(argv=None):
    """`colorgan serve [flags]`; argv is the flags after `serve` (sys.argv[1:] when None)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    fv = flags.FlagValues()  # its own, so that nothing else's flags can clash with these
    define_flags(fv)
    if any(a in ("-h", "--help", "-help", "--helpfull", "--helpshort") for a in argv):
        print(__doc__.strip() + "\n\nflags:\n" + fv.get_help(), flush=True)
        return 0
    try:
        args = fv(["colorgan serve", *argv])[1:]
    except flags.Error as e:
        raise ColorganError(f"{e}; see colorgan serve --help") from None
    return run(fv, args)


if __name__ == "__main__":
    sys.exit(main())
