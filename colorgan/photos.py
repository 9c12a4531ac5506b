"""Reading and writing photos: PIL for files (TF's decoders ignore EXIF), and EXIF orientation in a TF
graph for the SavedModel, so that both paths see the same upright picture.

Colour profiles are ignored consistently: pixel values are treated as sRGB for the Lab maths in every
path. ``write_photo`` copies the input's ICC profile onto the output, so a photo in, say, Adobe RGB
comes back in the same space rather than silently reinterpreted.
"""
import dataclasses
import io
import os
import pathlib
import tempfile

import numpy as np
import tensorflow as tf

from colorgan.errors import ColorganError


@dataclasses.dataclass
class Photo:
    pixels: np.ndarray          # uint8 H x W x 1 (gray) or H x W x 3 (RGB), EXIF orientation applied
    icc_profile: bytes = None   # the input's colour profile, copied onto the output


def decode_photo(contents, name="image"):
    """Encoded image bytes (any format PIL reads) -> Photo, upright as the camera meant it."""
    from PIL import Image, ImageOps
    try:
        with Image.open(io.BytesIO(contents)) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            icc_profile = image.info.get("icc_profile")
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I;16") or image.mode == "I":
                # 16-bit gray: keep the 8 most significant bits rather than letting PIL clip at 255.
                pixels = (np.asarray(image, np.uint32) >> 8).clip(0, 255).astype(np.uint8)[..., None]
            elif image.mode in ("1", "L", "LA"):
                pixels = np.asarray(image.convert("L"))[..., None]
            else:
                pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ColorganError(f"cannot read {name} as an image ({e}); check that it is a valid JPEG or PNG "
                            "or remove it from the inputs") from None
    return Photo(pixels, icc_profile)


def read_photo(path):
    path = pathlib.Path(path)
    try:
        contents = path.read_bytes()
    except OSError as e:
        raise ColorganError(f"cannot open {path} ({e.strerror}); check the path and its permissions") from None
    return decode_photo(contents, name=str(path))


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
    options = {"icc_profile": icc_profile} if icc_profile else {}
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
