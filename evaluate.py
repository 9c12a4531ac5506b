"""Score a colorizer on real photos, beside the trivial gray baseline on the very same photos.

    python evaluate.py --data=folder:../shared/data/val                 # the colorizer shipped with colorgan
    python evaluate.py --model=runs/quickstart --data=folder:../shared/data/val
    python evaluate.py --model=export/colorgan/1 --data=samples        # a SavedModel
    python evaluate.py --model=colorgan.tflite --data=folder:photos/
    python evaluate.py --model=gray --data=folder:../shared/data/val   # the baseline alone
    python evaluate.py --model=identity --data=samples                 # the real colours: a sanity check

The protocol and every metric are in colorgan/evaluation.py and colorgan/metrics.py.
"""
import os
from pathlib import Path

from absl import app, flags

from colorgan import data
from colorgan.errors import ColorganError, exit_on_user_error
from colorgan.evaluation import (evaluate, load_model, make_feature_extractor, model_name_of, plot_extremes,
                                 plot_grid, read_photos, report_table, write_csv, write_json,
                                 write_tensorboard)

FLAGS = flags.FLAGS


def define_flags():
    """The command line. Defined only when run as a script, so that importing this module (tests, a
    notebook, next to train.py, whose flags share some names) defines no global flags."""
    flags.DEFINE_string("model", None, "A training run dir or checkpoint, a .keras file, a SavedModel, a .tflite "
                        "file, 'gray' (a = b = 0) or 'identity' (the real colours); default: the shipped colorizer.")
    flags.DEFINE_string("data", "samples", "Data source: 'folder:PATH', 'samples' or 'tfds:NAME'.")
    flags.DEFINE_enum("split", "all", data.SPLITS, "Which split of the source to score.")
    flags.DEFINE_integer("size", 256, "Side of the square the photos are scored at.")
    flags.DEFINE_enum("resize", "straight", ["straight", "center_crop"],
                      "'straight': resize the whole photo to size x size (the published protocol); "
                      "'center_crop': resize the shorter side to size and crop the centre.")
    flags.DEFINE_integer("max_images", 0, "Score at most this many photos (0: all).")
    flags.DEFINE_integer("batch_size", 16, "Photos per batch.")
    flags.DEFINE_string("out_dir", None, "Where the reports go (default runs/eval/<model name>).")
    flags.DEFINE_integer("grid_images", 8, "Rows of the gray / predicted / real grid.")
    flags.DEFINE_integer("extremes", 4, "How many worst and how many best photos (by PSNR) to show.")
    flags.DEFINE_bool("fid", True, "Compute FID (needs the Inception weights: python -m colorgan.inception fetch).")
    flags.DEFINE_bool("tensorboard", False, "Also write TensorBoard summaries under <out_dir>/tensorboard.")


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise ColorganError(f"unexpected arguments {argv[1:]}: pass everything as --flags")
    if FLAGS.batch_size < 1:
        raise ColorganError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    model = load_model(FLAGS.model)
    name = model_name_of(FLAGS.model)
    out_dir = Path(FLAGS.out_dir or os.path.join("runs", "eval", name))
    unreadable = []
    total, photos = read_photos(FLAGS.data, FLAGS.split, unreadable)
    features, fid_skipped = make_feature_extractor(FLAGS.fid)

    evaluation = evaluate(model, photos, size=FLAGS.size, resize=FLAGS.resize, batch_size=FLAGS.batch_size,
                          total=total, features=features, fid_skipped=fid_skipped,
                          grid_images=FLAGS.grid_images, extremes=FLAGS.extremes,
                          max_images=FLAGS.max_images, unreadable=unreadable)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(evaluation, out_dir / "metrics.json",
               {"model_spec": FLAGS.model, "data": FLAGS.data, "split": FLAGS.split})
    write_csv(evaluation, out_dir / "per_image.csv")
    if evaluation.first:
        plot_grid(evaluation.first, out_dir / "grid.png", name)
    if evaluation.worst:
        plot_extremes(evaluation.worst, evaluation.best, out_dir / "extremes.png", name)
    if FLAGS.tensorboard and evaluation.first:
        write_tensorboard(evaluation, out_dir / "tensorboard", out_dir / "grid.png")
    print(report_table(evaluation, name))
    print(f"reports in {out_dir}/")


if __name__ == "__main__":
    define_flags()
    app.run(main)
