"""Score a colorizer on real photos, beside the trivial gray baseline on the very same photos.

    colorgan evaluate --data=folder:../shared/data/val                 # the colorizer shipped with colorgan
    colorgan evaluate --model=runs/quickstart --data=folder:../shared/data/val
    colorgan evaluate --model=export/colorgan/1 --data=samples        # a SavedModel
    colorgan evaluate --model=colorgan.tflite --data=folder:photos/
    colorgan evaluate --model=exported/colorgan.onnx --data=samples  # an ONNX file, via ONNX Runtime
    colorgan evaluate --model=gray --data=folder:../shared/data/val   # the baseline alone
    colorgan evaluate --model=identity --data=samples                 # the real colours: a sanity check
    colorgan evaluate --model=runs/hints_photos --hints=10 --data=folder:../shared/data/val  # 10 colour hints a photo

Every model is run exactly as `colorize` runs it (colorgan.inference). The protocol and every metric are
in colorgan/evaluation.py and colorgan/metrics.py.
"""
import os
from pathlib import Path

from absl import flags

from colorgan.errors import ColorganError


def define_flags(fv):
    from colorgan import sources
    flags.DEFINE_string("model", None, "A training run dir or checkpoint, a .keras file, a SavedModel, a .tflite "
                        "or .onnx file, 'gray' (a = b = 0), 'identity' (the real colours) or 'real:S' (the real colours "
                        "at S x S, resized back as a model's are); default: the shipped colorizer.", flag_values=fv)
    flags.DEFINE_string("data", "samples", "Data source: 'folder:PATH', 'samples' or 'tfds:NAME'.", flag_values=fv)
    flags.DEFINE_enum("split", "all", sources.SPLITS, "Which split of the source to score.", flag_values=fv)
    flags.DEFINE_integer("size", 256, "Side of the square the photos are scored at.", flag_values=fv)
    flags.DEFINE_enum("resize", "straight", ["straight", "center_crop"],
                      "'straight': resize the whole photo to size x size (the published protocol); "
                      "'center_crop': resize the shorter side to size and crop the centre.", flag_values=fv)
    flags.DEFINE_integer("max_images", 0, "Score at most this many photos (0: all).", flag_values=fv)
    flags.DEFINE_float("saturation", 1.0, "Score the model with its colour (a*, b*) multiplied by this, as "
                       "`colorize --saturation` gives it.", flag_values=fv)
    flags.DEFINE_integer("hints", 0, "For a model trained with colour hints: give each photo this many hints of "
                         "its real colours (places and patches drawn with --hint_seed), as Zhang et al. score theirs.",
                         flag_values=fv)
    flags.DEFINE_integer("hint_seed", 0, "Seed of the --hints draws (each photo's also depends on its name).",
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", 16, "Photos per batch.", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Where the reports go (default runs/eval/<model name>).", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace the reports of an earlier evaluation in --out_dir.", flag_values=fv)
    flags.DEFINE_integer("grid_images", 8, "Rows of the gray / predicted / real grid.", flag_values=fv)
    flags.DEFINE_integer("extremes", 4, "How many worst and how many best photos (by PSNR) to show.", flag_values=fv)
    flags.DEFINE_bool("fid", True, "Compute FID (needs the Inception weights: python -m colorgan.cli.fid fetch).", flag_values=fv)
    flags.DEFINE_bool("tensorboard", False, "Also write TensorBoard summaries under <out_dir>/tensorboard.", flag_values=fv)


def run(fv, args):
    from colorgan import outputs
    from colorgan.evaluation import (REPORTS, check_hints, check_settings, evaluate, load_model, make_feature_extractor,
                                     model_name_of, plot_extremes, plot_grid, read_photos, report_table, write_csv,
                                     write_json, write_tensorboard)
    if args:
        raise ColorganError(f"unexpected arguments {args}: pass everything as --flags")
    check_settings(fv.size, fv.batch_size, fv.grid_images, fv.extremes)
    name = model_name_of(fv.model) + (f"-saturation{fv.saturation:g}" if fv.saturation != 1.0 else "") + \
        (f"-hints{fv.hints}" if fv.hints else "")
    out_dir = Path(fv.out_dir or os.path.join("runs", "eval", name))
    # Before the model loads and the photos are scored: an output that cannot be written fails now.
    outputs.check("--out_dir", out_dir, folder=True, overwrite=fv.overwrite, replaces=REPORTS)
    model = load_model(fv.model, fv.saturation)
    check_hints(model, fv.hints)
    unreadable = []
    total, photos = read_photos(fv.data, fv.split, unreadable)
    features, fid_skipped = make_feature_extractor(fv.fid)

    evaluation = evaluate(model, photos, size=fv.size, resize=fv.resize, batch_size=fv.batch_size,
                          total=total, features=features, fid_skipped=fid_skipped,
                          grid_images=fv.grid_images, extremes=fv.extremes,
                          max_images=fv.max_images, unreadable=unreadable, hint_count=fv.hints,
                          hint_seed=fv.hint_seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(evaluation, out_dir / "metrics.json",
               {"model_spec": fv.model, "data": fv.data, "split": fv.split})
    write_csv(evaluation, out_dir / "per_image.csv")
    if evaluation.first:
        plot_grid(evaluation.first, out_dir / "grid.png", name)
    if evaluation.worst:
        plot_extremes(evaluation.worst, evaluation.best, out_dir / "extremes.png", name)
    if fv.tensorboard and evaluation.first:
        write_tensorboard(evaluation, out_dir / "tensorboard", out_dir / "grid.png")
    print(report_table(evaluation, name))
    print(f"reports in {out_dir}/")
    return 0
