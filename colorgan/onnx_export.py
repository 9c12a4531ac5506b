"""ONNX export of the L -> ab generator, for ONNX Runtime and the runtimes that read ONNX.

The contract, the same numbers as the TFLite file and the SavedModel's `predict_ab` signature:

    input  "l"   float32 [N, S, S, 1], NHWC: L/50 - 1 (CIE L* of the photo resized to S x S, in [-1, 1])
    output "ab"  float32 [N, S, S, 2], NHWC: ab/110  (CIE a*, b*, D65, about [-1, 1])

N is free; S is the model's training size (the input's shape, and "image_size" in the model's metadata).
Only the generator is in the file; around it the caller does what `colorgan.inference` does: resize the
RGB photo to S x S (bilinear, antialiased), take its L; resize the predicted ab back to the photo's size
(bilinear), join it with the photo's own full-resolution L, and convert Lab -> sRGB (out-of-gamut colours
pulled towards gray at constant L). `colorgan.inference.ONNXColorizer` does exactly that around a .onnx.

Converted by tf2onnx from a tf.function of the Keras model with an input signature: tf2onnx's
`from_keras` expects tf.keras (Keras 2) models, `from_function` takes a Keras 3 model called inside a
tf.function, with its variables frozen into the graph as constants.
"""
import json
import pathlib

import tensorflow as tf

from colorgan import export, photos
from colorgan.errors import ColorganError

# 17 is read by every ONNX Runtime from 1.13 (2022) on and has every op the generators use.
OPSET = 17
INSTALL_HINT = "pip install 'colorgan[onnx]' (tf2onnx, onnx and onnxruntime)"


def convert_onnx(generator, image_size, opset=OPSET):
    """The generator as an ONNX ModelProto: input "l" [N, S, S, 1] -> output "ab" [N, S, S, 2]."""
    try:
        import tf2onnx
    except ImportError:
        raise ColorganError(f"ONNX export needs tf2onnx: {INSTALL_HINT}") from None
    # The TensorSpec's name and the dict's key become the ONNX graph's input and output names.
    spec = [tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name="l")]
    call = tf.function(lambda l: {"ab": tf.cast(generator(l, training=False), tf.float32)}, input_signature=spec)
    model, _ = tf2onnx.convert.from_function(call, input_signature=spec, opset=opset)
    return model


def write_onnx(model, path, image_size, source="", **extra):
    """Write `path` (.onnx) atomically, colorgan's metadata (as beside a .tflite) in its metadata_props."""
    import onnx
    info = export.metadata(image_size, source, format="onnx", opset=OPSET, **extra)
    onnx.helper.set_model_props(model, {"image_size": str(int(image_size)), "colorgan": json.dumps(info)})
    path = pathlib.Path(path)
    photos.write_atomically(path, lambda f: f.write(model.SerializeToString()))
    return path

