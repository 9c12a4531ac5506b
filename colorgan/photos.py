"""Reading and writing photos: PIL for files (TF's decoders ignore EXIF), and EXIF orientation in a TF
graph for the SavedModel, so that both paths see the same upright picture.

Pixel values are treated as sRGB for the Lab maths in every path; colour profiles are handled in
colorgan.profiles (RGB profiles travel to the output, CMYK and Lab photos are converted to sRGB, the
rest are dropped). A file is checked before it is decoded: its pixel count against a limit, read from
its header, and its data against what the header declares (colorgan.payload), so that a tiny file
cannot cost minutes of work.
"""
import dataclasses
import io
import os
import pathlib
import stat
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from colorgan import payload, profiles
from colorgan.errors import ColorganError


@dataclasses.dataclass
class Photo:
    pixels: np.ndarray          # uint8 H x W x 1 (gray) or H x W x 3 (RGB), EXIF orientation applied
    icc_profile: bytes = None   # the input's RGB colour profile, copied onto the output
    notes: list = dataclasses.field(default_factory=list)  # what the user should know (pages dropped)


class TooManyPixels(ColorganError):
    """A photo over the caller's pixel limit, found from its header before any decoding."""


def decode_photo(contents, name="image", max_pixels=None):
    """Encoded image bytes (any format PIL reads) -> Photo, upright as the camera meant it.

    ``max_pixels`` refuses larger photos (TooManyPixels) from the header alone. PIL's own bomb
    guard still refuses photos over 2 x Image.MAX_IMAGE_PIXELS (179 MP) whatever the limit.
    """
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            # PIL warns above 89 MP (the caller's limit, checked next, is the one that applies) and about
            # damaged data (which fails below, with one line naming the file): its warnings are noise here.
            warnings.simplefilter("ignore")
            payload.check_structure(contents)  # a million empty chunks: refused before PIL walks them
            with Image.open(io.BytesIO(contents)) as image:
                width, height = image.size
                if max_pixels and width * height > max_pixels:
                    raise TooManyPixels(f"{name} has {width} x {height} pixels ({width * height / 1e6:.1f} MP), "
                                        f"over the limit of {max_pixels / 1e6:g} MP; pass a higher --max_pixels "
                                        "to colour it")
                payload.check(contents, image.format, image.size)
                return _decoded(image)
    except UnidentifiedImageError:
        # PIL's message names its BytesIO object rather than the file.
        raise ColorganError(f"cannot read {name}: not in an image format colorgan reads (JPEG, PNG, TIFF, GIF, "
                            "BMP, WebP); check the file or remove it from the inputs") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ColorganError(f"cannot read {name} as an image ({e}); check that it is a valid JPEG or PNG "
                            "or remove it from the inputs") from None


def _decoded(image):
    from PIL import ImageOps
    image_format = image.format
    pages = getattr(image, "n_frames", 1) if image_format == "TIFF" else 1  # counted before page 1 loads
    image.load()  # decode now, so a truncated file fails here and not later
    info = dict(image.info)
    image, icc_profile = profiles.to_srgb_or_rgb_profile(ImageOps.exif_transpose(image), info.get("icc_profile"))
    pixels, notes = pixels_of(image, image_format)
    if image_format == "PNG" and "icc_profile" not in info and "srgb" not in info:
        pixels = profiles.png_gamma_to_srgb(pixels, info.get("gamma"))  # iCCP and sRGB chunks override gAMA
    if pages > 1:
        notes.append(f"only page 1 of its {pages} pages is coloured")
    return Photo(pixels, icc_profile, notes)


def pixels_of(image, image_format):
    """A PIL image -> (uint8 H x W x 1 or x 3 pixels, notes). Deep gray modes are brought to 8 bits."""
    if image.mode.startswith("I;16") or image.mode == "I" and image_format == "PNG":
        # 16-bit gray: keep the 8 most significant bits rather than letting PIL clip at 255.
        return (np.asarray(image, np.uint32) >> 8).clip(0, 255).astype(np.uint8)[..., None], []
    if image.mode in ("I", "F"):
        return _stretched(np.asarray(image, np.float32), image.mode)
    if image.mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"))[..., None], []
    return np.asarray(image.convert("RGB")), []


def _stretched(values, mode):
    """32-bit integer or float gray (TIFF 'I' and 'F') -> uint8: PIL would clip it to 0..255 and make it
    black. Floats within [0, 1] are read as that range; anything else is scaled from its own min..max."""
    finite = np.isfinite(values)
    low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    if mode == "F" and 0.0 <= low and high <= 1.0:
        low, high = 0.0, 1.0
    scale = 255.0 / (high - low) if high > low else 0.0
    pixels = np.where(finite, np.round((values - low) * scale), 0.0).clip(0, 255).astype(np.uint8)[..., None]
    kind = "32-bit float" if mode == "F" else "32-bit integer"
    return pixels, [f"{kind} pixels scaled from {low:g}..{high:g} to 0..255"]


def read_photo(path, max_pixels=None):
    path = pathlib.Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read; a device never ends
            raise ColorganError(f"{path} is not a regular file (a FIFO, socket or device); colorize reads "
                                "image files only")
        contents = path.read_bytes()
    except OSError as e:
        raise ColorganError(f"cannot open {path} ({e.strerror}); check the path and its permissions") from None
    return decode_photo(contents, name=str(path), max_pixels=max_pixels)


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; give it a normal file's mode
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_photo(path, rgb, icc_profile=None, jpeg_quality=95):
    """uint8 RGB -> an image file whose format follows the suffix; written atomically."""
    from PIL import Image
    path = pathlib.Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ColorganError(f"cannot tell the image format of {path.name}; use a suffix such as .png or .jpg")
    # A gray or CMYK profile on an RGB file makes it invalid: only RGB ones are written (profiles.py).
    options = {"icc_profile": icc_profile} if profiles.colour_space(icc_profile) == "RGB" else {}
    if image_format == "JPEG":
        options.update(quality=jpeg_quality, subsampling=0)  # 4:4:4, colour is the whole point here
    write_atomically(path, lambda f: Image.fromarray(rgb, "RGB").save(f, format=image_format, **options))


# ---------------------------------------------------------------------------------------------
# EXIF orientation inside the graph. tf.io.decode_image ignores EXIF, and a phone photo taken
# upright is often stored sideways with an orientation tag; PIL's exif_transpose handles it in
# the Python path, this handles it in the SavedModel so that both give the same picture.
# ---------------------------------------------------------------------------------------------

# IFD entry of the Orientation tag (0x0112, type SHORT, count 1), little- and big-endian. The value
# follows in the next two bytes. Ten matching bytes do not occur by chance in a file's first 64 KiB.
_ORIENTATION_ENTRY_LE = [0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]
_ORIENTATION_ENTRY_BE = [0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]
_EXIF_SEARCH_BYTES = 65536  # EXIF lives in one JPEG APP1 segment (at most 64 KiB) near the start


def exif_orientation(contents):
    """Encoded image bytes (scalar string) -> EXIF orientation 1..8 as int32, 1 when there is none."""
    head = tf.io.decode_raw(tf.strings.substr(contents, 0, _EXIF_SEARCH_BYTES), tf.uint8)
    head = tf.cast(tf.concat([head, tf.zeros([10], tf.uint8)], axis=0), tf.int32)
    windows = tf.signal.frame(head, 10, 1)
    little = tf.reduce_all(windows[:, :8] == _ORIENTATION_ENTRY_LE, axis=1) & (windows[:, 9] == 0)
    big = tf.reduce_all(windows[:, :8] == _ORIENTATION_ENTRY_BE, axis=1) & (windows[:, 8] == 0)
    values = tf.where(little, windows[:, 8], tf.where(big, windows[:, 9], 0))
    values = tf.boolean_mask(values, (values >= 1) & (values <= 8))
    return tf.cond(tf.size(values) > 0, lambda: values[0], lambda: tf.constant(1, tf.int32))


def apply_exif_orientation(image, orientation):
    """Turn an (H, W, C) image upright, as PIL.ImageOps.exif_transpose does."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])
    return tf.switch_case(orientation - 1, [
        lambda: image,                                        # 1: stored upright
        lambda: tf.reverse(image, [1]),                       # 2: stored mirrored
        lambda: tf.image.rot90(image, 2),                     # 3: stored upside down
        lambda: tf.reverse(image, [0]),                       # 4: stored upside down and mirrored
        lambda: transpose(image),                             # 5: stored transposed
        lambda: tf.image.rot90(image, 3),                     # 6: stored turned a quarter left; turn right
        lambda: tf.image.rot90(transpose(image), 2),          # 7: stored transverse
        lambda: tf.image.rot90(image, 1),                     # 8: stored turned a quarter right; turn left
    ])
