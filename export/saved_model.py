"""Export a trained generator as a TF Serving SavedModel: OUT/NAME/VERSION/.

    python -m export.saved_model --model runs/quickstart --output_dir exported --name colorgan

Signatures:
  serving_default   images: string [batch] (JPEG or PNG, any size) -> images: PNG strings at full size
  colorize_tensor   image: uint8 [H, W, 3 or 1]                     -> image: uint8 [H, W, 3]
  predict_ab        l: float32 [batch, S, S, 1] (L/50 - 1)          -> ab: float32 [batch, S, S, 2] (ab/110)
Check it with `saved_model_cli show --all --dir OUT/NAME/VERSION`.
"""
from absl import app, flags, logging

from colorgan import models
from colorgan.errors import exit_on_user_error
from colorgan.export import export_saved_model

flags.DEFINE_string("model", None, "Training run dir, checkpoint (dir or prefix) or .keras file "
                    "(default: the colorizer shipped with colorgan).")
flags.DEFINE_string("output_dir", "exported", "Base folder; the model goes to OUTPUT_DIR/NAME/VERSION.")
flags.DEFINE_string("name", "colorgan", "Model name, the folder TF Serving's --model_base_path points into.")
flags.DEFINE_integer("version", None, "Version number; default one above the highest already there.")
FLAGS = flags.FLAGS


@exit_on_user_error
def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TF's SavedModel writer logs every step at INFO
    generator, image_size = models.load_generator(FLAGS.model)
    path = export_saved_model(generator, image_size, FLAGS.output_dir, FLAGS.name, FLAGS.version,
                              source=FLAGS.model or str(models.DEFAULT_GENERATOR))
    print(f"wrote {path} (image size {image_size}; signatures serving_default, colorize_tensor, predict_ab)")


if __name__ == "__main__":
    app.run(main)
