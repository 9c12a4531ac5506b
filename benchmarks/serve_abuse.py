"""Load test of `colorgan serve` under abuse: while hostile clients do their worst, how long do a good
client's GET /healthz and its upload of a small photo take? On 127.0.0.1 only.

    python benchmarks/serve_abuse.py                      # a server of its own (shipped model), 30 s a scenario
    python benchmarks/serve_abuse.py --seconds=60 --scenarios=slow_headers,png_chunk_flood
    python benchmarks/serve_abuse.py --url=http://127.0.0.1:8000/   # a server already running here

Scenarios (SCENARIOS), each alone, the good client probing throughout (/healthz every 0.25 s, an upload
every second, each with a 10 s timeout):
  slow_headers        300 connections that never finish their headers (a header line every 2 s), reopened
                      when the server closes them
  idle_keepalive      300 keep-alive connections, each idle after one answer, reopened when closed
  png_chunk_flood     4 clients uploading, in a loop, a valid 14 MB PNG of 1.2 million empty chunks
  field_flood         4 clients posting, in a loop, a 16 MB form of 300,000 fields
  chunked_body_flood  4 clients sending, in a loop, 18 MB bodies in 1-byte HTTP chunks
The target: every probe answered (200) within 3 s. tests/test_reliability_server.py runs each scenario
for a few seconds against a tiny model.
"""
import argparse
import asyncio
import http.client
import io
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib

HOST = "127.0.0.1"
TARGET_S = 3.0


# --- Hostile bodies ---

def _chunk(kind, data=b""):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunk_flood(chunks=1_200_000):
    """A valid 1x1 PNG with ``chunks`` empty ancillary chunks (type 'zzzz': private, safe to ignore)
    before its image data: 14 MB for 1.2 million."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    data = _chunk(b"IDAT", zlib.compress(b"\x00\x80\x80\x80"))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"zzzz") * chunks + data + _chunk(b"IEND")


def field_flood(fields=300_000, boundary="flood"):
    """(a multipart/form-data body of ``fields`` one-byte fields, its content type)."""
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\nx\r\n'.encode()
    return part * fields + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def good_photo():
    """A small real photo as PNG: what the good client uploads."""
    import numpy as np
    import skimage.data
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(Image.fromarray(skimage.data.astronaut()).resize((96, 96)))).save(buffer, "PNG")
    return buffer.getvalue()


# --- Hostile clients (asyncio, one thread) ---

async def _slow_headers(port, stop, count=300):
    async def one():
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n".encode())
                while not stop.is_set() and not reader.at_eof():
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                    try:  # returns early when the server closes the connection
                        await asyncio.wait_for(reader.read(1024), 2.0)
                    except asyncio.TimeoutError:
                        pass
                writer.close()
            except OSError:
                await asyncio.sleep(0.5)
    await asyncio.gather(*(one() for _ in range(count)))


async def _idle_keepalive(port, stop, count=300):
    async def one():
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                await writer.drain()
                await reader.readuntil(b"\r\n\r\n")
                while not stop.is_set() and await _open(reader):
                    pass  # idle until the server closes it
                writer.close()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await asyncio.sleep(0.5)
    await asyncio.gather(*(one() for _ in range(count)))


async def _open(reader):
    try:
        data = await asyncio.wait_for(reader.read(65536), 1.0)
        return bool(data)
    except asyncio.TimeoutError:
        return True


async def _post_loop(port, stop, body, content_type, clients=4, chunked=False):
    head = (f"POST /api/colorize HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n")
            + "Connection: close\r\n\r\n").encode()
    piece = b"1\r\nx\r\n" * 50_000  # 300 kB of one-byte chunks

    async def one():
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(head)
                if chunked:
                    for _ in range(len(body) // 50_000):
                        if stop.is_set() or reader.at_eof():
                            break
                        writer.write(piece)
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(body)
                await writer.drain()
                await asyncio.wait_for(reader.read(), 30)
                writer.close()
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.2)
    await asyncio.gather(*(one() for _ in range(clients)))


def _scenarios():
    png = png_chunk_flood()
    form, form_type = field_flood()
    return {
        "slow_headers": lambda port, stop: _slow_headers(port, stop),
        "idle_keepalive": lambda port, stop: _idle_keepalive(port, stop),
        "png_chunk_flood": lambda port, stop: _post_loop(port, stop, png, "image/png"),
        "field_flood": lambda port, stop: _post_loop(port, stop, form, form_type),
        "chunked_body_flood": lambda port, stop: _post_loop(port, stop, b"x" * 18_000_000,
                                                            "application/octet-stream", chunked=True),
    }


SCENARIOS = ("slow_headers", "idle_keepalive", "png_chunk_flood", "field_flood", "chunked_body_flood")


# --- The good client ---

def _timed(port, method, path, body=None, timeout=10.0):
    """(seconds, status) of one request on a fresh connection; status None if it failed."""
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        connection.request(method, path, body, {"Content-Type": "image/png"} if body else {})
        response = connection.getresponse()
        response.read()
        connection.close()
        return time.monotonic() - started, response.status
    except OSError:
        return time.monotonic() - started, None


def run_scenario(url, name, seconds, warmup_s=1.0):
    """Run one scenario against the server at ``url`` for ``seconds``; returns {"healthz": [(s, status)],
    "upload": [(s, status)]} measured after ``warmup_s`` of abuse."""
    port = urllib.parse.urlparse(url).port
    assert urllib.parse.urlparse(url).hostname == HOST, "the load test runs on 127.0.0.1 only"
    stop, attack = threading.Event(), _scenarios()[name]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(attack(port, stop)), daemon=True)
    thread.start()
    photo, probes = good_photo(), {"healthz": [], "upload": []}
    try:
        time.sleep(warmup_s)
        end, next_upload = time.monotonic() + seconds, 0.0
        while time.monotonic() < end:
            probes["healthz"].append(_timed(port, "GET", "/healthz"))
            if time.monotonic() >= next_upload:
                probes["upload"].append(_timed(port, "POST", "/api/colorize", photo))
                next_upload = time.monotonic() + 1.0
            time.sleep(0.25)
    finally:
        stop.set()
        thread.join(60)
    return probes


def summary(probes):
    """{probe: {"n", "failed", "median_s", "max_s"}}."""
    out = {}
    for probe, results in probes.items():
        times = [s for s, status in results]
        out[probe] = {"n": len(results), "failed": sum(status != 200 for _, status in results),
                      "median_s": round(statistics.median(times), 3) if times else None,
                      "max_s": round(max(times), 3) if times else None}
    return out


def start_server(model=None):
    """`colorgan serve` on a free port of 127.0.0.1 in a subprocess: (process, url)."""
    command = [sys.executable, "-m", "colorgan", "serve", "--port=0", "--quiet"] + ([f"--model={model}"] if model else [])
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"),
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in process.stderr:
        found = re.search(r"serving .* at (http://127\.0\.0\.1:\d+/)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, found[1]
    raise RuntimeError(f"the server did not start (exit status {process.wait()})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a server already running on 127.0.0.1 (default: start one)")
    parser.add_argument("--model", help="the model of the server started here (default: the shipped one)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per scenario, at most 60")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    seconds = min(args.seconds, 60.0)
    process, url = (None, args.url) if args.url else start_server(args.model)
    results = {}
    try:
        for name in args.scenarios.split(","):
            results[name] = summary(run_scenario(url, name, seconds))
            worst = max(results[name][p]["max_s"] for p in results[name])
            failed = sum(results[name][p]["failed"] for p in results[name])
            verdict = "ok" if worst < TARGET_S and not failed else "MISSED"
            print(f"{name:20s} healthz {results[name]['healthz']}  upload {results[name]['upload']}  {verdict}",
                  flush=True)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    print(json.dumps({"seconds": seconds, "target_s": TARGET_S, "results": results}, indent=2))
    return 0 if all(max(r[p]["max_s"] for p in r) < TARGET_S and not sum(r[p]["failed"] for p in r)
                    for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
