"""ONNX export of the L -> ab generator, for ONNX Runtime and the runtimes that read ONNX.

The contract, the same numbers as the TFLite file and the SavedModel's `predict_ab` signature:

    input  "l"      float32 [N, S, S, 1], NHWC: L/50 - 1 (CIE L* of the photo resized to S x S, in [-1, 1])
    input  "hints"  float32 [N, S, S, 3], NHWC, only for a model trained with colour hints: a*/110 and b*/110 at
                    the hinted pixels and a mask (1 there, 0 elsewhere; all zeros: no hints), see
                    colorgan/hints.py and export.HINTS_NORMALISATION
    output "ab"     float32 [N, S, S, 2], NHWC: ab/110  (CIE a*, b*, D65, about [-1, 1])

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

from colorgan import export, hints, photos
from colorgan.errors import ColorganError
from colorgan.models import hint_branch

# 17 is read by every ONNX Runtime from 1.13 (2022) on and has every op the generators use.
OPSET = 17
INSTALL_HINT = "pip install 'colorgan[onnx]' (tf2onnx, onnx and onnxruntime)"


def convert_onnx(generator, image_size, opset=OPSET):
    """The generator as an ONNX ModelProto: input "l" [N, S, S, 1] (and "hints" [N, S, S, 3] for a model
    with hints) -> output "ab" [N, S, S, 2]."""
    try:
        import tf2onnx
    except ImportError:
        raise ColorganError(f"ONNX export needs tf2onnx: {INSTALL_HINT}") from None
    # The TensorSpec's name and the dict's key become the ONNX graph's input and output names.
    spec = [tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name="l")]
    if hint_branch.takes_hints(generator):
        spec.append(tf.TensorSpec([None, image_size, image_size, hints.CHANNELS], tf.float32, name="hints"))
        run = lambda l, maps: {"ab": tf.cast(generator([l, maps], training=False), tf.float32)}
    else:
        run = lambda l: {"ab": tf.cast(generator(l, training=False), tf.float32)}
    call = tf.function(run, input_signature=spec)
    model, _ = tf2onnx.convert.from_function(call, input_signature=spec, opset=opset)
    return model


def write_onnx(model, path, image_size, source="", **extra):
    """Write `path` (.onnx) atomically, colorgan's metadata (as beside a .tflite) in its metadata_props."""
    import onnx
    takes_hints = any(i.name == "hints" for i in model.graph.input)
    info = export.metadata(image_size, source, takes_hints, format="onnx", opset=OPSET, **extra)
    onnx.helper.set_model_props(model, {"image_size": str(int(image_size)), "colorgan": json.dumps(info)})
    path = pathlib.Path(path)
    photos.write_atomically(path, lambda f: f.write(model.SerializeToString()))
    return path

