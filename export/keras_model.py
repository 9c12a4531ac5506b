"""Write a trained generator as one `.keras` file, the form colorgan ships its own model in.

    python -m export.keras_model --model runs/shared_photos --output models/colorgan-lite0.keras

float16 weights (the default) halve the file; `models.load_generator` and `colorize` turn them back into
float32. The written file is loaded again and compared with the source model on real photos.
"""
from absl import app, flags

from colorgan import export, inference, models
from colorgan.errors import exit_on_user_error

flags.DEFINE_string("model", None, "Training run dir, checkpoint (dir or prefix) or .keras file.", required=True)
flags.DEFINE_string("output", None, "The .keras file to write.", required=True)
flags.DEFINE_enum("weights_dtype", "float16", ["float16", "float32"], "How the weights are stored.")
flags.DEFINE_string("data", "samples", "Photo source (val split) for the check against the source model.")
flags.DEFINE_integer("parity_photos", 20, "Validation photos for that check.")
FLAGS = flags.FLAGS


@exit_on_user_error
def main(argv):
    del argv
    generator, image_size = models.load_generator(FLAGS.model)
    path = models.save_generator(generator, FLAGS.output, FLAGS.weights_dtype)
    written = inference.load_colorizer(str(path))
    parity_l = export.l_batches(FLAGS.data, "val", image_size, FLAGS.parity_photos)
    check = export.parity(inference.KerasColorizer(generator, image_size), written, parity_l)
    print(f"wrote {path}: {path.stat().st_size / 1e6:.1f} MB, {FLAGS.weights_dtype} weights; against the source "
          f"on {len(parity_l)} photos: max |ab| {check['max_ab_diff']:.3f}, mean |ab| {check['mean_ab_diff']:.4f}, PSNR {check['psnr_db']:.1f} dB")


if __name__ == "__main__":
    app.run(main)
