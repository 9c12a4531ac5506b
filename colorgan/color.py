"""sRGB <-> CIE L*a*b* (D65, 2 degree observer) in TensorFlow, matching skimage.color.

Everything here is plain TF, so it runs inside tf.data and tf.function and on any leading shape.
The constants are skimage's own, so values agree with ``skimage.color.rgb2lab`` to float32 precision.
"""
import numpy as np
import tensorflow as tf

# sRGB primaries to XYZ, as in skimage.color.colorconv.xyz_from_rgb.
_XYZ_FROM_RGB = [[0.412453, 0.357580, 0.180423],
                 [0.212671, 0.715160, 0.072169],
                 [0.019334, 0.119193, 0.950227]]
_WHITE_D65 = (0.95047, 1.0, 1.08883)

# The model's view of Lab: L in [0, 100] -> [-1, 1], ab in about [-110, 110] -> [-1, 1].
L_CENTER = 50.0
AB_SCALE = 110.0


_RGB_FROM_XYZ = np.linalg.inv(np.array(_XYZ_FROM_RGB, np.float64)).tolist()


def _times_matrix(pixels, matrix):
    """(..., 3) pixels times a 3x3 matrix, written out per channel. tf.linalg.matvec broadcasts a batched
    product (30x slower on a 16x256x256 batch), and a matmul's rounding can change with the batch size;
    this is elementwise, so a photo gets the same colours alone or in a batch."""
    channels = tf.unstack(pixels, axis=-1)
    return tf.stack([sum(float(m) * c for m, c in zip(row, channels)) for row in matrix], axis=-1)


def rgb_to_lab(rgb):
    """float RGB in [0, 1], shape (..., 3) -> Lab (L in [0, 100]), float32."""
    rgb = tf.convert_to_tensor(rgb, tf.float32)
    linear = tf.where(rgb > 0.04045, tf.pow((tf.maximum(rgb, 0.04045) + 0.055) / 1.055, 2.4), rgb / 12.92)
    xyz = _times_matrix(linear, _XYZ_FROM_RGB)
    xyz = xyz / tf.constant(_WHITE_D65, tf.float32)
    # 7.787 and 0.008856 are skimage's (slightly rounded) CIE constants; keep them for exact parity.
    f = tf.where(xyz > 0.008856, tf.pow(tf.maximum(xyz, 0.008856), 1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _from_f(f):
    """CIE's inverse of f: f^3 above 6/29, a line below; written with max and min, without a select,
    which on a 12-megapixel photo is several passes fewer (the two pieces meet at 6/29)."""
    knee = 0.2068966
    high = tf.maximum(f, knee)
    return high * high * high + (tf.minimum(f, knee) - knee) / 7.787


def linear_channels(L, a, b):
    """L*, a*, b* (same shape each) -> [R, G, B] in linear light, float32, not clipped: a value outside
    [0, 1] means the colour is outside sRGB. Channel by channel, so no pass stacks or splits them."""
    fy = (L + 16.0) / 116.0
    return _linear_of(fy, _from_f(fy), a, b)


def _linear_of(fy, y, a, b):
    """linear_channels given f(Y) and the luminance Y itself (a photo's full-resolution path has both)."""
    # skimage clamps z at 0 for impossible (negative) values; so do we.
    x = _from_f(fy + a * (1.0 / 500.0)) * _WHITE_D65[0]
    z = _from_f(tf.maximum(fy - b * (1.0 / 200.0), 0.0)) * _WHITE_D65[2]
    return [float(row[0]) * x + float(row[1]) * y + float(row[2]) * z for row in _RGB_FROM_XYZ]


def lab_to_linear(lab):
    """Lab (..., 3) -> linear-light RGB (..., 3), float32, not clipped."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    return tf.stack(linear_channels(*tf.unstack(lab, axis=-1)), axis=-1)


def lab_to_rgb(lab):
    """Lab, shape (..., 3) -> float RGB clipped to [0, 1], float32. Out-of-gamut colours are clipped."""
    linear = lab_to_linear(lab)
    rgb = tf.where(linear > 0.0031308,
                   1.055 * tf.pow(tf.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055, 12.92 * linear)
    return tf.clip_by_value(rgb, 0.0, 1.0)


def encode_lab(lab):
    """Lab -> the model's (L, ab) pair in [-1, 1]: ``L/50 - 1`` and ``ab/110``."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    return lab[..., :1] / L_CENTER - 1.0, lab[..., 1:] / AB_SCALE


def decode_lab(l, ab):
    """Inverse of :func:`encode_lab`: the model's (L, ab) in [-1, 1] -> Lab."""
    l = tf.cast(l, tf.float32)
    ab = tf.cast(ab, tf.float32)
    return tf.concat([(l + 1.0) * L_CENTER, ab * AB_SCALE], axis=-1)


def rgb_to_model(rgb):
    """float RGB in [0, 1] -> normalised (L, ab), the generator's input and target."""
    return encode_lab(rgb_to_lab(rgb))


def model_to_rgb(l, ab):
    """Normalised (L, ab) -> float RGB in [0, 1]."""
    return lab_to_rgb(decode_lab(l, ab))


# --------------------------------------------------------------------------------------------------
# Full-resolution colour for photos: 8-bit sRGB in and out through tables, the gamut tested in linear
# light. A 12-megapixel photo has 36M channel values; a power function on each, and a Lab round trip to
# test the gamut, cost seconds, where table lookups and one 3x3 product cost a fraction of that.

def _srgb_to_linear(v):
    return np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)


# Linear light of each 8-bit code value, and the 8-bit code of linear light in 2^16 steps: near black,
# where the curve is steepest (12.92 x 255 codes per unit), one step is 0.05 of a code.
_LINEAR_OF_CODE = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
LINEAR_STEPS = 65535
_linear = np.arange(LINEAR_STEPS + 1) / LINEAR_STEPS
_CODE_OF_LINEAR = np.round(255.0 * np.where(_linear > 0.0031308, 1.055 * _linear ** (1 / 2.4) - 0.055,
                                            12.92 * _linear)).astype(np.uint8)
del _linear

# Linear RGB this far outside [0, 1] still counts as inside the gamut: clipping it moves L* by < 0.05.
GAMUT_TOLERANCE = 1e-4
GAMUT_SEARCH_STEPS = 8


def luminance_of_srgb8(images):
    """uint8 sRGB (..., 3) -> luminance Y (...), the white's being 1: three table lookups and one row of
    the matrix per pixel. L* depends on Y alone."""
    linear = tf.unstack(tf.gather(tf.constant(_LINEAR_OF_CODE), tf.cast(images, tf.int32)), axis=-1)
    return sum(float(m) * c for m, c in zip(_XYZ_FROM_RGB[1], linear))


def f_of_luminance(y):
    """CIE's f(Y) = (L* + 16) / 116: a cube root above 0.008856, a line below."""
    return tf.where(y > 0.008856, tf.pow(tf.maximum(y, 0.008856), 1.0 / 3.0), 7.787 * y + 16.0 / 116.0)


def lightness_of_srgb8(images):
    """uint8 sRGB (..., 3) -> L* (..., 1), float32: the same L* as ``rgb_to_lab`` to float precision."""
    return (116.0 * f_of_luminance(luminance_of_srgb8(images)) - 16.0)[..., None]


def _in_gamut(channels):
    inside = None
    for c in channels:
        ok = (c >= -GAMUT_TOLERANCE) & (c <= 1.0 + GAMUT_TOLERANCE)
        inside = ok if inside is None else inside & ok
    return inside


def lab_to_srgb8(L, a, b):
    """L*, a*, b* (same shape each) -> uint8 sRGB (..., 3), pulling out-of-gamut colours towards gray at
    constant L and hue.

    Plain clipping of an impossible colour (a saturated blue on a bright pixel, say) changes its
    lightness; here its chroma is reduced instead, by bisection, until the colour exists in sRGB. Only
    the out-of-gamut pixels are searched.
    """
    fy = (tf.cast(L, tf.float32) + 16.0) / 116.0
    return srgb8_of(fy, _from_f(fy), a, b)


def _chroma_in_gamut(fy, y, a, b):
    """The factor (0..1) by which (a, b) shrinks towards gray until the colour exists in sRGB, for colours
    outside it: bisection, ``low`` staying inside the gamut (gray always is) and ``high`` outside."""
    def halve_the_interval(low, high):
        middle = (low + high) / 2.0
        inside = _in_gamut(_linear_of(fy, y, a * middle, b * middle))
        return tf.where(inside, middle, low), tf.where(inside, high, middle)

    # A loop keeps the graph small.
    low, _ = tf.while_loop(lambda low, high: True, halve_the_interval,
                           (tf.zeros_like(fy), tf.ones_like(fy)), maximum_iterations=GAMUT_SEARCH_STEPS)
    return low


def ab_in_gamut(L, a, b):
    """(a*, b*) of the colour (L*, a*, b*) pulled towards gray at constant L* and hue until it exists in sRGB,
    as ``lab_to_srgb8`` pulls it; colours inside the gamut keep theirs. Same shapes in and out, float32."""
    L, a, b = (tf.cast(t, tf.float32) for t in (L, a, b))
    fy = (L + 16.0) / 116.0
    y = _from_f(fy)
    inside = _in_gamut(_linear_of(fy, y, a, b))
    scale = tf.where(inside, 1.0, _chroma_in_gamut(fy, y, a, b))
    return a * scale, b * scale


def srgb8_of(fy, y, a, b):
    """``lab_to_srgb8`` given f(Y) and the luminance Y, as a photo's full-resolution path has them."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    channels = _linear_of(fy, y, a, b)
    where = tf.where(tf.logical_not(_in_gamut(channels)))
    fy_out, y_out, a_out, b_out = (tf.gather_nd(t, where) for t in (fy, y, a, b))
    low = _chroma_in_gamut(fy_out, y_out, a_out, b_out)
    mapped = _linear_of(fy_out, y_out, a_out * low, b_out * low)
    table = tf.constant(_CODE_OF_LINEAR)
    codes = []
    for channel, inside_value in zip(channels, mapped):
        channel = tf.tensor_scatter_nd_update(channel, where, inside_value)
        codes.append(tf.gather(table, tf.cast(tf.clip_by_value(channel, 0.0, 1.0) * LINEAR_STEPS + 0.5, tf.int32)))
    return tf.stack(codes, axis=-1)


def colourfulness(rgb):
    """Hasler and Suesstrunk's colourfulness of each image, on the 0..255 scale, differentiable.

    The M of ``metrics.colourfulness`` (NumPy, for scoring), in TF for the losses and the data filter:
    sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2) with rg = R - G and yb = (R + G)/2 - B,
    for RGB in [0, 1] of shape (B, H, W, 3). A small epsilon keeps the gradient finite at gray.
    """
    rgb = 255.0 * tf.cast(rgb, tf.float32)
    red, green, blue = tf.unstack(rgb, axis=-1)
    rg = tf.reshape(red - green, [tf.shape(rgb)[0], -1])
    yb = tf.reshape(0.5 * (red + green) - blue, [tf.shape(rgb)[0], -1])
    rg_mean, rg_var = tf.nn.moments(rg, axes=[1])
    yb_mean, yb_var = tf.nn.moments(yb, axes=[1])
    return tf.sqrt(rg_var + yb_var + 1e-6) + 0.3 * tf.sqrt(tf.square(rg_mean) + tf.square(yb_mean) + 1e-6)
