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


def lab_to_rgb(lab):
    """Lab, shape (..., 3) -> float RGB clipped to [0, 1], float32. Out-of-gamut colours are clipped."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    L, a, b = tf.unstack(lab, axis=-1)
    fy = (L + 16.0) / 116.0
    # skimage clamps z at 0 for impossible (negative) values; so do we.
    f = tf.stack([a / 500.0 + fy, fy, tf.maximum(fy - b / 200.0, 0.0)], axis=-1)
    xyz = tf.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)
    xyz = xyz * tf.constant(_WHITE_D65, tf.float32)
    linear = _times_matrix(xyz, _RGB_FROM_XYZ)
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


# A Lab colour is inside the sRGB gamut when it survives Lab -> RGB -> Lab within this many Lab units.
GAMUT_TOLERANCE = 0.1
GAMUT_SEARCH_STEPS = 8


def lightness_preserving_rgb(lab):
    """Lab (..., 3) -> RGB in [0, 1], pulling out-of-gamut colours towards gray at constant L and hue.

    Plain clipping of an impossible colour (a saturated blue on a bright pixel, say) changes its
    lightness; here its chroma is reduced instead, by bisection, until the colour exists in sRGB.
    Only the out-of-gamut pixels are searched, so in-gamut photos cost one extra round trip.
    """
    rgb = lab_to_rgb(lab)
    error = tf.reduce_max(tf.abs(rgb_to_lab(rgb) - lab), axis=-1)
    where = tf.where(error > GAMUT_TOLERANCE)
    outside = tf.gather_nd(lab, where)
    lightness, chroma = outside[:, :1], outside[:, 1:]

    def halve_the_interval(low, high):
        middle = (low + high) / 2.0
        candidate = tf.concat([lightness, chroma * middle], axis=-1)
        inside = tf.reduce_max(tf.abs(rgb_to_lab(lab_to_rgb(candidate)) - candidate),
                               axis=-1, keepdims=True) <= GAMUT_TOLERANCE
        return tf.where(inside, middle, low), tf.where(inside, high, middle)

    # low stays inside the gamut (gray always is), high outside; a loop keeps the graph small.
    low, high = tf.while_loop(lambda low, high: True, halve_the_interval,
                              (tf.zeros_like(lightness), tf.ones_like(lightness)),
                              maximum_iterations=GAMUT_SEARCH_STEPS)
    mapped = lab_to_rgb(tf.concat([lightness, chroma * low], axis=-1))
    return tf.tensor_scatter_nd_update(rgb, where, mapped)


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
