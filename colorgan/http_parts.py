"""The pieces of `colorgan serve` under its routes: refusals as JSON, form uploads parsed in memory,
image sizes read from headers, PNG encoding, the one thread that owns the model, the Host allow-list and
the listening socket."""
import concurrent.futures
import io
import queue
import socket
import threading

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from colorgan.errors import ColorganError

PRIVATE_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]


class Refusal(Exception):
    """A request answered with an error; `close` drops the connection, for a body we will not read."""

    def __init__(self, status, message, close=False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close

    def response(self):
        return error_response(self.status, self.message, {"connection": "close"} if self.close else None)


def error_response(status, message, headers=None):
    return JSONResponse({"error": message}, status, headers=headers)


def image_size_of(contents):
    """(width, height) from an image's header, without decoding its pixels."""
    from PIL import Image

    from colorgan import payload
    try:
        payload.check_structure(contents)
        with Image.open(io.BytesIO(contents)) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError's message names a BytesIO object, which helps nobody.
        why = "" if isinstance(e, Image.UnidentifiedImageError) else f" ({e})"
        raise ColorganError(f"the upload is not an image colorgan can read{why}; send a JPEG or PNG") from None


# A form needs one part (the photo), a browser may add a few; hundreds of thousands took seconds to parse.
MAX_FORM_PARTS = 16
MAX_PART_HEADER_BYTES = 16 * 1024


def form_file(content_type, body, fields=None):
    """The photo in a multipart/form-data body: its `file` field, else its only complete part.
    Parsed in memory: a form library would spool large files to a temporary file on disk. A form of
    more than MAX_FORM_PARTS parts, or a part header over MAX_PART_HEADER_BYTES, is refused as soon as
    the parser reaches it. ``fields``, a dict, receives the body's other complete named parts (name -> bytes)."""
    from python_multipart.multipart import MultipartParser, parse_options_header
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    parts, header = [], [b"", b""]  # parts: [field name, data, complete?]

    def on_part_begin():
        if len(parts) >= MAX_FORM_PARTS:
            raise Refusal(400, f"the form has more than {MAX_FORM_PARTS} parts; send the photo alone, as the "
                               "field `file` (curl -F file=@photo.jpg)")
        parts.append([None, bytearray(), False])

    def on_header(index, data, start, end):
        header[index] += data[start:end]
        if len(header[0]) + len(header[1]) > MAX_PART_HEADER_BYTES:
            raise Refusal(400, f"a form part's header is over {MAX_PART_HEADER_BYTES // 1024} kB; send the photo "
                               "as the field `file` (curl -F file=@photo.jpg)")

    def on_header_end():
        if header[0].lower() == b"content-disposition":
            parts[-1][0] = parse_options_header(header[1])[1].get(b"name")
        header[:] = [b"", b""]

    callbacks = {"on_part_begin": on_part_begin,
                 "on_header_field": lambda data, start, end: on_header(0, data, start, end),
                 "on_header_value": lambda data, start, end: on_header(1, data, start, end),
                 "on_header_end": on_header_end,
                 "on_part_data": lambda data, start, end: parts[-1][1].extend(data[start:end]),
                 "on_part_end": lambda: parts[-1].__setitem__(2, True)}
    try:
        MultipartParser(boundary or b"-", callbacks).write(body)
    except ValueError:  # python-multipart's parse errors are ValueErrors
        boundary = None
    complete = [part for part in parts if part[2]]
    named = [part for part in complete if part[0] == b"file"] or (complete if len(complete) == 1 else [])
    if fields is not None:
        fields.update((part[0].decode("utf-8", "replace"), bytes(part[1])) for part in complete
                      if part[0] and part[0] != b"file")
    if boundary is None or not named:
        raise Refusal(400, "send the photo as the form field `file` (curl -F file=@photo.jpg) "
                           "or as the request body (curl --data-binary @photo.jpg)")
    return bytes(named[0][1])


def encode_png(rgb, icc_profile=None):
    from PIL import Image
    buffer = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    # Level 1: the PNG goes over localhost, so speed matters more than a smaller file.
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", compress_level=1, **options)
    return buffer.getvalue()


class Worker:
    """One thread that owns the model, and the `capacity` slots for photos waiting for it or in it."""

    def __init__(self, colorizer, capacity):
        self.colorizer, self.capacity = colorizer, capacity
        self.pending, self.lock = 0, threading.Lock()
        # Unbounded on purpose: `capacity` already bounds the jobs that can wait here.
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="colorgan-model", daemon=True)
        self.thread.start()

    def full(self):
        return self.pending >= self.capacity

    def try_submit(self, contents, saturation=1.0, hints=None):
        """Image bytes -> a Future of PNG bytes (or of a ColorganError), or None when all slots are taken;
        `saturation` scales its colour, `hints` (a checked hints document) are its colour hints. The slot is
        free again once the Future is done or cancelled."""
        with self.lock:
            if self.full():
                return None
            self.pending += 1
        job = [contents, concurrent.futures.Future(), saturation, hints]
        job[1].add_done_callback(lambda _: self._finished(job))
        self.jobs.put(job)
        return job[1]

    def _finished(self, job):
        job[0] = None  # a cancelled photo's bytes go now, not when the worker reaches it
        with self.lock:
            self.pending -= 1

    def _run(self):
        from colorgan.inference import SaturatedColorizer
        from colorgan.photos import decode_photo
        while (job := self.jobs.get()) is not None:
            future = job[1]
            if not future.set_running_or_notify_cancel():
                continue  # its client gave up before its turn
            try:
                photo = decode_photo(job[0], name="the upload")
                job[0] = None  # only the decoded photo stays in memory while it is coloured
                # Encoded here too, so that only one full-size photo is ever in memory, not one per request.
                colorizer = self.colorizer if job[2] == 1.0 else SaturatedColorizer(self.colorizer, job[2])
                # Hints that miss the photo: a ColorganError. Without hints, any object with colorize(pixels) serves.
                hints = {} if job[3] is None else {"hints": job[3]}
                rgb = colorizer.colorize(photo.pixels, **hints)
                future.set_result(encode_png(rgb, photo.icc_profile))
            except Exception as e:  # the handler reports it; the worker must survive any one photo
                future.set_exception(e)

    def close(self):
        self.jobs.put(None)
        self.thread.join(timeout=10)  # a photo being coloured may be dropped: the process is ending


def host_name(host_header):
    """The name in a Host header, lower case, without its port: 'LocalHost:8000' -> 'localhost'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


class Guard:
    """ASGI middleware: answer only requests for allowed host names, and mark every answer private."""

    def __init__(self, app, allowed_hosts):
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_private(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *PRIVATE_HEADERS]}
            await send(message)

        host = host_name(Headers(scope=scope).get("host", ""))
        if "*" in self.allowed_hosts or host in self.allowed_hosts:
            return await self.app(scope, receive, send_private)
        message = (f"this server answers only for {', '.join(sorted(self.allowed_hosts))}, not for "
                   f"Host {host or '(none)'!r}; add a name with --allowed_hosts")
        await error_response(400, message)(scope, receive, send_private)


def listen(host, port):
    """A listening socket, bound before the server starts, so that a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=128)
    except OSError as e:
        raise ColorganError(f"cannot listen on {host}:{port} ({e.strerror or e}); check --host, "
                            "or pick another --port if that one is in use") from None


# A body arrives in h11 events, one a chunk of a chunked body or a read of any other: a 20 MB upload in
# 16 kB reads is 1,250, over a slow link with 1.4 kB segments 14,000.
MAX_BODY_PIECES = 100_000
# ... and past this many, they must average MIN_PIECE_BYTES: one-byte chunks are refused after 10,000.
SMALL_PIECES_AFTER, MIN_PIECE_BYTES = 10_000, 512


def guarded_protocol(header_timeout_s, max_connections):
    """uvicorn's h11 protocol class with the guards a server that anyone can reach needs (uvicorn has
    none of the first two, and its limit_concurrency answers every new client 503 once idle connections
    fill it):

    * Each request's headers must be complete within ``header_timeout_s`` of the connection's start or
      of the previous answer: one that trickles its headers (slowloris) is closed. uvicorn's own idle
      timeout (timeout_keep_alive) restarts with every byte, and a new connection had none at all.
    * Past ``max_connections`` connections, the oldest ones that are not in the middle of a request
      (idle keep-alive, unfinished headers) are closed to make room: a crowd of them cannot lock out a
      good client. Only if every connection is busy with a request is the new one closed.
    * What a connection sends is parsed SLICE bytes at a time, other connections served in between, and
      a body that comes in too many pieces is refused (400, MAX_BODY_PIECES, MIN_PIECE_BYTES): a body
      in one-byte HTTP chunks (18 million h11 events for 18 MB) can neither hold the event loop nor
      keep it busy.
    """
    import h11
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Flow(FlowControl):
        """uvicorn's flow control, with a second reason to stop reading: parsing has fallen behind."""

        def __init__(self, transport, protocol):
            super().__init__(transport)
            self.protocol, self.held = protocol, False

        def resume_reading(self):
            if self.read_paused:
                self.read_paused = False
                if not self.held:
                    self._transport.resume_reading()

        def hold(self, held):
            self.held = held
            if held:
                self._transport.pause_reading()
            elif not self.read_paused:
                self._transport.resume_reading()

    class GuardedH11Protocol(H11Protocol):
        SLICE = 4 * 1024

        def connection_made(self, transport):
            super().connection_made(transport)
            self.flow = Flow(transport, self)
            self.pieces, self.piece_bytes, next_event = 0, 0, self.conn.next_event

            def counted_next_event():
                event = next_event()
                if type(event) is h11.Data:
                    self.pieces += 1
                    self.piece_bytes += len(event.data)
                    # uvicorn answers 400 and closes the connection
                    if self.pieces > MAX_BODY_PIECES or (self.pieces > SMALL_PIECES_AFTER
                                                         and self.piece_bytes < MIN_PIECE_BYTES * self.pieces):
                        raise h11.RemoteProtocolError("a body in too many small pieces")
                elif type(event) is h11.Request:
                    self.pieces = self.piece_bytes = 0
                return event
            self.conn.next_event = counted_next_event
            self.opened, self.dropped, self.pending, self.feeding = self.loop.time(), False, bytearray(), False
            self.header_deadline = None
            self._arm_header_deadline()
            self._make_room()

        def connection_lost(self, exc):
            self._disarm_header_deadline()
            self.pending.clear()
            super().connection_lost(exc)

        def busy(self):
            """In the middle of a request: its headers are in and its answer is not all sent."""
            return self.cycle is not None and not self.cycle.response_complete

        def drop(self):
            self.dropped = True
            self._disarm_header_deadline()
            self.transport.close()

        def _make_room(self):
            alive = [c for c in self.connections if not getattr(c, "dropped", False)]
            excess = len(alive) - max_connections
            if excess <= 0:
                return
            idle = sorted((c for c in alive if c is not self and not c.busy()), key=lambda c: c.opened)
            for connection in idle[:excess]:
                connection.drop()
            if excess > len(idle):  # every other connection is busy with a request
                self.drop()

        def _arm_header_deadline(self):
            self._disarm_header_deadline()
            self.header_deadline = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm_header_deadline(self):
            if self.header_deadline is not None:
                self.header_deadline.cancel()
                self.header_deadline = None

        def _headers_too_slow(self):
            self.header_deadline = None
            if not self.busy() and not self.transport.is_closing():
                self.drop()

        def data_received(self, data):
            self.pending += data
            if len(self.pending) > 4 * self.SLICE:
                self.flow.hold(True)
            if not self.feeding:
                self.feeding = True
                self._feed()

        def _feed(self):
            if self.transport.is_closing():
                self.pending.clear()
            piece = bytes(self.pending[:self.SLICE])
            del self.pending[:self.SLICE]
            if piece:
                super().data_received(piece)
                if self.busy():
                    self._disarm_header_deadline()
            if self.pending:
                self.loop.call_soon(self._feed)
                return
            self.feeding = False
            if self.flow.held:
                self.flow.hold(False)

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing() and not self.busy():
                self._arm_header_deadline()  # the next request's headers, from now

    return GuardedH11Protocol
