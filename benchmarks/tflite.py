"""The TFLite forms of a generator on one thread, as a phone runs them: latency of the model alone and
of a whole photo at full resolution, and parity with the Keras model.

    python benchmarks/tflite.py                 # the shipped model, float32 / float16 / int8, ~3 min
    python benchmarks/tflite.py --model=runs/mine --photo_sizes=640x480

Conversion, int8 calibration (training photos) and parity (validation photos) are `colorgan export
--format=tflite`'s own. Full-resolution latency is `colorize` on a decoded photo in memory (resize, the
model, ab upsampled and joined with the photo's L, gamut mapping), the median of --repeats calls.
"""
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model to convert (default: the shipped one).")
flags.DEFINE_list("variants", ["float32", "float16", "int8"], "TFLite variants.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_list("photo_sizes", ["1024x768", "4000x3000"], "W x H of the full-resolution photos.")
flags.DEFINE_string("data", "folder:" + os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..",
                                                                       "shared", "data", "val")),
                    "Photos for calibration (its train split) and parity (its val split); default: samples "
                    "when the shared set is missing.")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure.")


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv):
    del argv
    import skimage.data
    from PIL import Image

    from colorgan import export, inference, saving
    data = FLAGS.data if os.path.isdir(FLAGS.data.split(":", 1)[-1]) else "samples"
    generator, size = saving.load_generator(FLAGS.model)
    reference = inference.KerasColorizer(generator, size)
    parity_l = export.l_batches(data, "val", size, 20)
    calibration_l = export.l_batches(data, "train", size, 100) if "int8" in FLAGS.variants else None
    photos = {}
    for spec in FLAGS.photo_sizes:
        width, height = (int(v) for v in spec.lower().split("x"))
        photos[spec] = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BICUBIC))
    rows = [("keras (TF, all cores)", reference, None)]
    for variant in FLAGS.variants:
        flatbuffer = export.convert_tflite(generator, size, variant, calibration_l)
        rows.append((f"tflite {variant}", inference.TFLiteColorizer(variant, FLAGS.threads, model_content=flatbuffer),
                     len(flatbuffer)))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; model input {size}x{size}; "
          f"parity on {len(parity_l)} photos of {data}")
    print("| form | size MB | model ms | " + " | ".join(f"{s} photo s" for s in photos)
          + " | max abs ab | mean abs ab | PSNR dB vs Keras |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in photos) + " | ---: | ---: | ---: |")
    for name, colorizer, nbytes in rows:
        model_s = median_seconds(lambda: colorizer.predict_ab(parity_l[0]), FLAGS.repeats)
        full = [median_seconds(lambda: colorizer.colorize(photo), FLAGS.repeats) for photo in photos.values()]
        check = export.parity(reference, colorizer, parity_l)
        print(f"| {name} | {'' if nbytes is None else f'{nbytes / 1e6:.1f}'} | {model_s * 1e3:.1f} | "
              + " | ".join(f"{s:.2f}" for s in full)
              + f" | {check['max_ab_diff']:.2f} | {check['mean_ab_diff']:.3f} | {check['psnr_db']:.1f} |")


if __name__ == "__main__":
    app.run(main)
