"""Tiny ICC profiles for tests: PIL's ImageCms creates sRGB and Lab ones, but no gray or CMYK ones.

Both are version 2 profiles with only the tags LittleCMS needs: a gray display profile (gamma 2.2) and
a CMYK printer profile whose A2B0 table prints on yellowish paper, so that a conversion that used it
can be told from PIL's naive CMYK -> RGB.
"""
import itertools
import struct

D50 = (0.9642, 1.0, 0.8249)


def _s15(x):
    return struct.pack(">i", round(x * 65536))


def _xyz(xyz):
    return b"XYZ " + bytes(4) + b"".join(map(_s15, xyz))


def _desc(text):
    ascii_text = text.encode() + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


def _text(text):
    return b"text" + bytes(4) + text.encode() + b"\0"


def _profile(device_class, space, pcs, tags):
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + device_class
              + space + pcs + bytes(12) + b"acsp" + bytes(4 * 4 + 8 + 4) + b"".join(map(_s15, D50))
              + bytes(4 + 44))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def gray_profile(gamma=2.2):
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))
    return _profile(b"mntr", b"GRAY", b"XYZ ", [(b"desc", _desc("test gray")), (b"wtpt", _xyz(D50)),
                                                (b"cprt", _text("none")), (b"kTRC", curve)])


def _lab8(l, a, b):
    return bytes([round(l * 255 / 100), round(a + 128), round(b + 128)])


def cmyk_profile():
    """CMYK -> Lab through a 2-point grid: paper white is Lab (95, 0, 30), ink darkens and tints it."""
    grid = b""
    for c, m, y, k in itertools.product((0, 1), repeat=4):  # the first channel varies slowest
        lightness = 95 * (1 - k) * (1 - 0.3 * (c + m + y) / 3)
        grid += _lab8(lightness, 40 * (m - c), 30 * (1 - c) * (1 - k) + 40 * y - 40 * c)
    ramp = bytes(range(256))
    lut = (b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
           + ramp * 4 + grid + ramp * 3)
    return _profile(b"prtr", b"CMYK", b"Lab ", [(b"desc", _desc("test cmyk")), (b"wtpt", _xyz(D50)),
                                               (b"cprt", _text("none")), (b"A2B0", lut)])
