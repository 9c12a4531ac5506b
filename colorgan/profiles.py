"""Colour profiles of photos read for colouring, so that every output is a valid RGB file.

The colouring maths treats pixel values as sRGB and every output is RGB, so an input's profile can
only travel to the output when it describes RGB. What each input gets:

- an RGB ICC profile on a colour photo: kept, and written onto the output (an Adobe RGB photo comes
  back in Adobe RGB rather than silently reinterpreted);
- a CMYK or Lab photo: converted to sRGB with its own profile (PIL's ImageCms; Lab's standard one when
  it has none); the output carries no profile, which means sRGB;
- any other profile (gray on a gray scan, the typical input; an RGB profile on a gray photo; one
  LittleCMS cannot read): dropped, since an RGB output with it would be an invalid file;
- a PNG gamma (gAMA) other than sRGB's, with no profile: the values are converted to sRGB, which every
  output format can carry.
"""
import io

import numpy as np

# Photos of these modes are gray (or gray with alpha) in whatever bit depth.
GRAY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
SRGB_GAMMA = 1 / 2.2  # PNG writers store 45455 for "sRGB-like"; within 2% counts as sRGB
_TO_SRGB = {"CMYK", "LAB"}


def colour_space(icc_profile):
    """'RGB', 'GRAY', 'CMYK', 'LAB', ... of an ICC profile, or None when it is absent or unreadable."""
    if not icc_profile:
        return None
    from PIL import ImageCms
    try:
        return ImageCms.getOpenProfile(io.BytesIO(icc_profile)).profile.xcolor_space.strip().upper()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def to_srgb_or_rgb_profile(image, icc_profile):
    """(image, profile to write on the output or None): CMYK and Lab images converted to sRGB, and the
    profile kept only when it is an RGB profile of a colour image."""
    from PIL import ImageCms
    space = colour_space(icc_profile)
    if image.mode in _TO_SRGB:
        if space == image.mode:
            source = ImageCms.getOpenProfile(io.BytesIO(icc_profile))
        elif image.mode == "LAB":
            source = ImageCms.createProfile("LAB")
        else:
            return image.convert("RGB"), None  # CMYK without a profile: PIL's naive inversion, as before
        try:
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"), None
        except ImageCms.PyCMSError:
            return image.convert("RGB"), None  # a profile LittleCMS cannot apply: as if it had none
    if space == "RGB" and image.mode not in GRAY_MODES:
        return image, icc_profile
    return image, None


def png_gamma_to_srgb(pixels, gamma):
    """uint8 pixels stored with PNG file gamma ``gamma`` (value = linear ** gamma) -> sRGB values."""
    if not gamma or abs(gamma / SRGB_GAMMA - 1) < 0.02:
        return pixels
    linear = (np.arange(256) / 255.0) ** (1.0 / gamma)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    table = np.round(np.clip(srgb, 0, 1) * 255).astype(np.uint8)
    return table[pixels]
