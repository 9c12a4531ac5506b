"""Convert a trained generator to TFLite for phones, and check each variant against the Keras model.

    python -m export.tflite --model runs/quickstart --data folder:/work/shared/data --output_dir exported/tflite

Only the L -> ab generator goes into the .tflite (input L/50 - 1, output ab/110, batch 1); each file gets
a metadata JSON beside it. Every variant is run with the LiteRT interpreter on real validation photos and
compared with the Keras model: max and mean |ab| difference (Lab units) and PSNR of the colours.
"""
import pathlib

from absl import app, flags, logging

from colorgan import export, inference, models
from colorgan.errors import ColorganError, exit_on_user_error

flags.DEFINE_string("model", None, "Training run dir, checkpoint (dir or prefix) or .keras file "
                    "(default: the colorizer shipped with colorgan).")
flags.DEFINE_string("output_dir", "exported/tflite", "Folder for NAME_VARIANT.tflite and its .json.")
flags.DEFINE_string("name", "colorgan", "File name stem.")
flags.DEFINE_list("variants", ["float32", "float16", "int8"],
                  f"Any of {', '.join(export.VARIANTS)}. dynamic_int8 can be 26-50x slower than float on x86; it warns.")
flags.DEFINE_string("data", "samples", "Photo source for int8 calibration (train split) and parity (val split).")
flags.DEFINE_integer("calibration_photos", 100, "Photos for the int8 representative dataset.")
flags.DEFINE_integer("parity_photos", 20, "Validation photos for the parity check.")
FLAGS = flags.FLAGS


@exit_on_user_error
def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs every step at INFO
    unknown = sorted(set(FLAGS.variants) - set(export.VARIANTS))
    if unknown:
        raise ColorganError(f"unknown --variants {', '.join(unknown)}: use {', '.join(export.VARIANTS)}")
    generator, image_size = models.load_generator(FLAGS.model)
    source = FLAGS.model or str(models.DEFAULT_GENERATOR)
    reference = inference.KerasColorizer(generator, image_size, source=source)
    parity_l = export.l_batches(FLAGS.data, "val", image_size, FLAGS.parity_photos)
    calibration_l = (export.l_batches(FLAGS.data, "train", image_size, FLAGS.calibration_photos)
                     if "int8" in FLAGS.variants else None)
    keras_seconds = export.seconds_per_photo(reference, parity_l[0])

    print(f"{'variant':<13} {'size MB':>8} {'ms/photo':>9} {'x keras':>8} {'max |ab|':>9} {'mean |ab|':>10} "
          f"{'PSNR dB':>8}   ({len(parity_l)} photos from {FLAGS.data}, Keras {keras_seconds * 1e3:.1f} ms/photo)")
    for variant in FLAGS.variants:
        flatbuffer = export.convert_tflite(generator, image_size, variant, calibration_l)
        path = pathlib.Path(FLAGS.output_dir) / f"{FLAGS.name}_{variant}.tflite"
        candidate = inference.TFLiteColorizer(path, model_content=flatbuffer)
        check = export.parity(reference, candidate, parity_l)
        seconds = export.seconds_per_photo(candidate, parity_l[0])
        # The measured figures go into the metadata, so they travel with the file.
        export.write_tflite(flatbuffer, path, image_size, variant, source=source, parity=check,
                            seconds_per_photo_x86=round(seconds, 5))
        print(f"{variant:<13} {len(flatbuffer) / 1e6:>8.2f} {seconds * 1e3:>9.1f} {seconds / keras_seconds:>8.1f} "
              f"{check['max_ab_diff']:>9.3f} {check['mean_ab_diff']:>10.4f} {check['psnr_db']:>8.1f}")


if __name__ == "__main__":
    app.run(main)
