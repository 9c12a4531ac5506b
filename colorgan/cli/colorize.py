"""colorgan colorize (or `colorize`): colourise photos at their full resolution with a trained model.

    colorize photos/ more/*.jpg one.png --output_dir colorized    # the colorizer shipped with colorgan
    colorize --model runs/quickstart photos/                      # a model of your own

Inputs are image files, folders (searched recursively; the output tree mirrors the folder) or globs
(quoted, so that `**` works; the tree below the glob's fixed part is mirrored). The model is a
training run dir, a checkpoint, a `.keras` file, a SavedModel or a `.tflite` file; without --model,
the trained colorizer that ships with colorgan (models/MODEL_CARD.md). Outputs go to
--output_dir; an existing output, or an input itself, is replaced only with --overwrite. A file that
cannot be read is reported and skipped; the exit status is 1 if any file failed, 2 on a usage error.
"""
import dataclasses
import glob
import os
import pathlib
import sys

from absl import flags

from colorgan import photos
from colorgan.errors import ColorganError



def define_flags(fv):
    flags.DEFINE_string("model", None, "Training run dir, checkpoint, .keras file, SavedModel dir or .tflite file "
                        "(default: the colorizer shipped with colorgan).", flag_values=fv)
    flags.DEFINE_string("output_dir", "colorized", "Folder for the colourised photos.", flag_values=fv)
    flags.DEFINE_enum("format", "png", ["png", "jpg", "same"],
                      "Output format: png (lossless, default), jpg (quality 95) or the input's own.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace existing outputs, even when an output is the input itself.",
                      flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Photos of equal size run through the model together.", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=fv)


# Folders are searched for these; a file named explicitly is tried whatever its suffix.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Photos of different sizes wait in memory for company; past this many pixels they run as they are.
PENDING_PIXELS = 64_000_000


@dataclasses.dataclass
class Job:
    source: pathlib.Path
    target: pathlib.Path


@dataclasses.dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0

    def line(self):
        return f"done {self.done}, skipped {self.skipped}, failed {self.failed}"


def report(kind, path, reason):
    print(f"{kind}: {path}: {reason}", file=sys.stderr, flush=True)


def find_inputs(args, output_dir):
    """(input file, path relative to the output dir) for every input argument; missing ones separately."""
    output_dir = output_dir.resolve()
    found, missing = [], []

    def add_tree(base, files):
        for f in sorted(files):
            name_parts = f.relative_to(base).parts
            # A dangling link is kept, so that it is reported as failed rather than silently missed.
            if ((f.is_file() or f.is_symlink() and not f.exists()) and f.suffix.lower() in EXTENSIONS and not any(p.startswith(".") for p in name_parts)
                    and output_dir not in f.resolve().parents):  # never colourise our own earlier outputs
                found.append((f, f.relative_to(base)))

    for arg in args:
        path = pathlib.Path(arg)
        if path.is_dir():
            add_tree(path, path.rglob("*"))
        elif path.is_file():
            found.append((path, pathlib.Path(path.name)))
        elif glob.has_magic(arg):
            fixed = [part for part in pathlib.Path(arg).parts]
            fixed = fixed[:next(i for i, part in enumerate(fixed) if glob.has_magic(part))]
            matches = [pathlib.Path(m) for m in glob.glob(arg, recursive=True)]
            if not matches:
                missing.append(arg)
            add_tree(pathlib.Path(*fixed) if fixed else pathlib.Path("."), [m for m in matches if m.is_file()])
        else:
            missing.append(arg)
    return found, missing


def plan_jobs(inputs, output_dir, image_format, overwrite, summary):
    """Jobs for the inputs, skipping (and reporting) those whose output must not be written."""
    jobs, claimed = [], {}
    for source, relative in inputs:
        suffix = source.suffix if image_format == "same" else "." + image_format
        target = output_dir / relative.with_suffix(suffix)
        key = target.resolve()
        if key in claimed:
            summary.failed += 1
            report("failed", source, f"its output {target} is also the output of {claimed[key]}; "
                                     "colourise the two in separate runs or rename one")
            continue
        claimed[key] = source
        if target.exists() and not overwrite:
            summary.skipped += 1
            what = "is the input itself" if key == source.resolve() else "already exists"
            report("skipped", source, f"output {target} {what}; pass --overwrite to replace it")
            continue
        jobs.append(Job(source, target))
    return jobs


def colorize_files(colorizer, jobs, batch_size, summary, progress=True):
    """Read, colourise in batches of equal-size photos, and write; counts results in `summary`."""
    import keras
    import numpy as np

    # The bar redraws one line; in a log file (no terminal) it would only add noise.
    bar = keras.utils.Progbar(len(jobs), unit_name="photo") if progress and jobs and sys.stdout.isatty() else None
    pending = {}  # (H, W, C) -> [(job, photo)]

    def finish(group):
        try:
            outputs = colorizer.colorize_batch(np.stack([photo.pixels for _, photo in group]))
        except Exception as e:  # a model failure is reported per photo; the run goes on
            outputs = [e] * len(group)
        for (job, photo), rgb in zip(group, outputs):
            try:
                if isinstance(rgb, Exception):
                    raise rgb
                photos.write_photo(job.target, rgb, photo.icc_profile)
                summary.done += 1
            except (ColorganError, OSError, ValueError) as e:
                summary.failed += 1
                report("failed", job.source, e)
            if bar:
                bar.add(1)

    for job in jobs:
        try:
            photo = photos.read_photo(job.source)
        except ColorganError as e:
            summary.failed += 1
            report("failed", job.source, e)
            if bar:
                bar.add(1)
            continue
        group = pending.setdefault(photo.pixels.shape, [])
        group.append((job, photo))
        if len(group) == batch_size:
            finish(pending.pop(photo.pixels.shape))
        elif sum(len(g) * g[0][1].pixels[..., 0].size for g in pending.values()) > PENDING_PIXELS:
            for shape in list(pending):
                finish(pending.pop(shape))
    for group in pending.values():
        finish(group)


def colorize(args, model=None, output_dir="colorized", image_format="png", overwrite=False, batch_size=8, progress=True):
    """The whole command, callable from Python; returns the Summary."""
    from colorgan import inference

    if not args:
        raise ColorganError("no inputs: name image files, folders or globs to colourise")
    if batch_size < 1:
        raise ColorganError(f"--batch_size must be at least 1, got {batch_size}")
    output_dir = pathlib.Path(output_dir)
    summary = Summary()
    inputs, missing = find_inputs(args, output_dir)
    for arg in missing:
        summary.failed += 1
        report("failed", arg, "no such file, folder or matching glob")
    jobs = plan_jobs(inputs, output_dir, image_format, overwrite, summary)
    if jobs:
        colorizer = inference.load_colorizer(model)
        colorize_files(colorizer, jobs, batch_size, summary, progress)
    print(summary.line(), flush=True)
    return summary


def run(fv, args):
    """The command: exit status 0 when every photo was done or skipped, 1 when any failed."""
    summary = colorize(args, fv.model, fv.output_dir, fv.format, fv.overwrite, fv.batch_size, fv.progress)
    return 1 if summary.failed else 0
