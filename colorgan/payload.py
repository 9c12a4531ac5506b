"""Does an image file hold the pixels its header declares? Checked before PIL decodes it.

PIL accepts a PNG whose compressed stream ends after one row, a JPEG whose scan ends early and a GIF
whose frame data runs out, and fills the rest with black or gray: a 115-byte PNG that declares
12000 x 12000 pixels decodes "fine" and then costs minutes of colouring. These checks read only the
file's structure (and, for PNG, inflate its data once without keeping it), so a lying header fails
in milliseconds. Each raises ValueError naming what is missing; a file too damaged to parse is left
to PIL, which reports it.
"""
import re
import struct
import zlib

# Deflate cannot expand by more than about 1032:1, whatever the data.
DEFLATE_MAX_RATIO = 1032
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


# Pieces of structure that PIL (and the checks below) walk one by one in Python: real files hold a few,
# a hostile one within the upload limit a million (a 14 MB PNG of empty chunks took seconds to open).
MAX_PNG_CHUNKS = 100_000       # a 20 MB PNG in libpng's 8 kB IDATs has 2,500; an APNG two a frame
MAX_JPEG_SEGMENTS = 10_000     # markers and scans; real files have tens
MAX_GIF_BLOCKS = 100_000       # extension and data sub-blocks before the first frame's pixels
MAX_TIFF_PAGES = 10_000


def check_structure(contents):
    """Raise ValueError when ``contents`` (a whole file) holds more chunks, segments, blocks or pages than
    any real image: opening it would cost seconds. Costs at most the limit in steps, and nothing for
    other formats."""
    try:
        if contents[:8] == b"\x89PNG\r\n\x1a\n":
            _count("PNG", "chunks", MAX_PNG_CHUNKS, _png_offsets(contents))
        elif contents[:2] == b"\xff\xd8":
            _count("JPEG", "segments", MAX_JPEG_SEGMENTS, _jpeg_segments(contents))
        elif contents[:6] in (b"GIF87a", b"GIF89a"):
            _count("GIF", "blocks before its first picture", MAX_GIF_BLOCKS, _gif_blocks(contents))
        elif contents[:4] in (b"II*\x00", b"MM\x00*"):
            _count("TIFF", "pages", MAX_TIFF_PAGES, _tiff_pages(contents))
    except (struct.error, IndexError):
        return  # too broken to walk: PIL reports it


def _count(kind, what, limit, pieces):
    for n, _ in enumerate(pieces, 1):
        if n > limit:
            raise ValueError(f"the {kind} file holds more than {limit:,} {what}, far more than any real image; "
                             "save it again with an image editor")


def _png_offsets(contents):
    offset = 8
    while offset + 8 <= len(contents):
        yield offset
        offset += 12 + struct.unpack_from(">I", contents, offset)[0]


def _jpeg_segments(contents):
    offset = 2
    while offset + 4 <= len(contents) and contents[offset] == 0xFF:
        marker = contents[offset + 1]
        if marker == 0xFF:
            offset += 1
            continue
        if marker == 0xD9:
            return
        yield offset
        offset += 2 + struct.unpack_from(">H", contents, offset + 2)[0]
        if marker == 0xDA:  # entropy-coded data, to the next marker that is not a restart or stuffing
            end = _MARKER.search(contents, offset)
            offset = end.start() if end else len(contents)


def _gif_blocks(contents):
    flags = contents[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while contents[offset] == 0x21:  # extensions: label, then sub-blocks to an empty one
        offset += 2
        while contents[offset]:
            yield offset
            offset += 1 + contents[offset]
        offset += 1


def _tiff_pages(contents):
    order = "<" if contents[:2] == b"II" else ">"
    offset, seen = struct.unpack_from(order + "I", contents, 4)[0], set()
    while offset and offset not in seen:
        seen.add(offset)
        yield offset
        entries = struct.unpack_from(order + "H", contents, offset)[0]
        offset = struct.unpack_from(order + "I", contents, offset + 2 + 12 * entries)[0]


def check(contents, image_format, size):
    """Raise ValueError when ``contents`` (a whole file) cannot hold a ``size`` image of its format."""
    checker = {"PNG": _check_png, "JPEG": _check_jpeg, "MPO": _check_jpeg, "GIF": _check_gif}.get(image_format)
    if checker is not None:
        try:
            checker(contents, *size)
        except (struct.error, IndexError, KeyError, StopIteration):
            return  # structure too broken to judge: PIL's decoder reports it in its own words


def _truncated(width, height, share, bound=True):
    return ValueError(f"truncated image data: the file declares {width} x {height} pixels but holds data "
                      f"for {'at most ' if bound else ''}{share:.2%} of them")


def _png_chunks(contents):
    offset = 8
    while offset + 8 <= len(contents):
        length, kind = struct.unpack(">I4s", contents[offset:offset + 8])
        yield kind, contents[offset + 8:offset + 8 + length]
        offset += 12 + length


def _png_raw_size(width, height, bits, interlaced):
    """Bytes of filtered scanlines (one filter byte a row) the zlib stream must inflate to."""
    passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
        if columns and rows:
            total += rows * (1 + -(-columns * bits // 8))
    return total


def _check_png(contents, width, height):
    chunks = list(_png_chunks(contents))
    header = next(data for kind, data in chunks if kind == b"IHDR")
    depth, colour_type, _, _, interlace = struct.unpack(">5B", header[8:13])
    expected = _png_raw_size(width, height, depth * PNG_CHANNELS[colour_type], interlace == 1)
    stream = [data for kind, data in chunks if kind == b"IDAT"]
    if sum(map(len, stream)) * DEFLATE_MAX_RATIO < expected:  # cannot be there: no need to inflate
        raise _truncated(width, height, sum(map(len, stream)) * DEFLATE_MAX_RATIO / expected)
    inflater, produced = zlib.decompressobj(), 0
    for data in stream:
        while data and produced < expected:
            try:
                produced += len(inflater.decompress(data, 1 << 20))  # 1 MiB at a time: memory stays flat
            except zlib.error:
                return  # corrupt, not short: PIL says so
            data = inflater.unconsumed_tail
    if produced < expected:
        raise _truncated(width, height, produced / expected, bound=False)


# A JPEG marker that ends entropy-coded data: 0xFF followed by neither a stuffed 0x00 nor RST0..7.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOF_HUFFMAN = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}


def _check_jpeg(contents, width, height):
    """Huffman coding spends at least one bit on every 8 x 8 block of the full-resolution component
    (its DC coefficient), in baseline and progressive files alike; arithmetic coding is not judged."""
    offset, entropy_bytes, huffman = 2, 0, False
    while offset + 4 <= len(contents):
        if contents[offset] != 0xFF:
            return
        marker = contents[offset + 1]
        if marker == 0xFF:
            offset += 1
            continue
        if marker == 0xD9:
            break
        length = struct.unpack(">H", contents[offset + 2:offset + 4])[0]
        huffman = huffman or marker in _SOF_HUFFMAN
        offset += 2 + length
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            end = _MARKER.search(contents, offset)
            end = end.start() if end else len(contents)
            entropy_bytes, offset = entropy_bytes + end - offset, end
    blocks = -(-width // 8) * -(-height // 8)
    if huffman and entropy_bytes * 8 < blocks:
        raise _truncated(width, height, entropy_bytes * 8 / blocks)


def _check_gif(contents, width, height):
    """The k-th LZW code after a clear decodes to at most k pixels (and never more than 4096), and
    takes at least min_code_size + 1 bits: a bound on the pixels the first frame's data can hold."""
    flags = contents[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while contents[offset] == 0x21:  # extensions before the first frame: label, then sub-blocks
        offset += 2
        while contents[offset]:
            offset += 1 + contents[offset]
        offset += 1
    if contents[offset] != 0x2C:
        return
    frame_width, frame_height, frame_flags = struct.unpack("<HHB", contents[offset + 5:offset + 10])
    offset += 10 + (3 << ((frame_flags & 7) + 1) if frame_flags & 0x80 else 0)
    min_code_size, offset, data_bytes = contents[offset], offset + 1, 0
    while offset < len(contents) and contents[offset]:
        data_bytes += min(contents[offset], len(contents) - offset - 1)
        offset += 1 + contents[offset]
    codes = 8 * data_bytes // (min_code_size + 1)
    capacity = codes * (codes + 1) // 2 if codes <= 4096 else 4096 * 4097 // 2 + (codes - 4096) * 4096
    if capacity < frame_width * frame_height:
        raise _truncated(frame_width, frame_height, capacity / (frame_width * frame_height))
