"""colorgan colorize (or `colorize`): colourise photos at their full resolution with a trained model.

    colorize photos/ more/*.jpg one.png --output_dir colorized    # the colorizer shipped with colorgan
    colorize --model runs/quickstart photos/                      # a model of your own
    colorize --model runs/hints_photos photo.jpg --hints=hints.json   # with colour hints (one photo)

Inputs are image files, folders (searched recursively; the output tree mirrors the folder) or globs
(quoted, so that `**` works; the tree below the glob's fixed part is mirrored). The model is a
training run dir, a checkpoint, a `.keras` file, a SavedModel or a `.tflite` file; without --model,
the trained colorizer that ships with colorgan (models/MODEL_CARD.md). Outputs go to
--output_dir, which may be the input folder itself: colorize lists what it writes there in
.colorgan-outputs and never takes those files as inputs. An input is never replaced: a photo whose output
would be an input (colouring a folder into itself) is written beside it as NAME_color.EXT. An existing
output is replaced only with --overwrite. A file that cannot be read, or has more than --max_pixels, is
reported and skipped. The exit status is 0 when every photo found was coloured or already had its output,
1 if any file failed, 2 on a usage error found before any work: no photos at all, or an output folder
that cannot be written.

--hints=FILE gives colour hints for one photo to a model trained with them: a JSON file
{"points": [{"x": 412, "y": 230, "color": "#b3261e"}, ...]}, the points in the photo's pixel coordinates
(from its top-left corner, after EXIF orientation) and the colours hex sRGB, each taken as its a*b* at the
photo's own L* (colorgan/hints.py; the web page downloads such files). A malformed file, a point outside
the photo, a colour that is not one, more than 64 points, or a model without hints is a usage error (2).
"""
import dataclasses
import glob
import json
import pathlib
import sys

from absl import flags

from colorgan import outputs, photos
from colorgan.errors import ColorganError


def define_flags(fv):
    flags.DEFINE_string("model", None, "Training run dir, checkpoint, .keras file, SavedModel dir or .tflite file "
                        "(default: the colorizer shipped with colorgan).", flag_values=fv)
    flags.DEFINE_string("output_dir", "colorized", "Folder for the colourised photos.", flag_values=fv)
    flags.DEFINE_enum("format", "same", ["same", "png", "jpg"],
                      "Output format: same (default: the input's own, so a JPEG stays a JPEG of quality 95 with "
                      "full-resolution colour, not a PNG five times its size; a GIF becomes a PNG), png "
                      "(lossless) or jpg.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace existing outputs (inputs are never replaced: an output that "
                      f"would be one is written beside it as NAME{BESIDE_SUFFIX}.EXT).", flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Photos of equal size run through the model together. Memory stays "
                         "bounded whatever it says: photos wait for company up to 64 MP, and run 8 MP at a time.",
                         flag_values=fv)
    flags.DEFINE_float("saturation", 1.0, "Multiply the predicted colour (a*, b*) by this: above 1 livelier, "
                       "below 1 duller, 0 gray; the lightness stays the photo's.", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=fv)
    flags.DEFINE_string("hints", None, "A JSON file of colour hints for the one photo coloured, for a model trained "
                        "with them: {\"points\": [{\"x\": X, \"y\": Y, \"color\": \"#rrggbb\"}, ...]} in the "
                        "photo's pixel coordinates.", flag_values=fv)
    flags.DEFINE_integer("max_pixels", 100_000_000, "Refuse photos with more pixels than this, read from the file "
                         "header before decoding (0: no limit but PIL's own, 179 MP).", flag_values=fv)


# Folders are searched for these; a file named explicitly is tried whatever its suffix.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# --format=same keeps these as PNG instead: a 256-colour palette would throw the new colour away.
PALETTE_SUFFIXES = (".gif",)
# Photos of different sizes wait in memory for company; past this many pixels they run as they are.
PENDING_PIXELS = 64_000_000
# In the output folder: what colorize wrote there, one JSON string (a path relative to it) a line.
OUTPUTS_LIST = ".colorgan-outputs"
# Added to the name of an output that would otherwise be an input (a folder coloured into itself).
BESIDE_SUFFIX = "_color"


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


class OutputsList:
    """The files colorize wrote into an output folder, so that a later run over that same folder (the
    output folder may be the input folder, or a parent of it) never colours its own outputs again."""

    def __init__(self, output_dir):
        self.output_dir = output_dir
        self.path = output_dir / OUTPUTS_LIST
        self.written = set()
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError):
            lines = []  # none yet (or unreadable): nothing is known to be ours
        for line in lines:
            try:
                self.written.add((output_dir / json.loads(line)).resolve())
            except (ValueError, TypeError):
                continue  # a line cut short by a crash

    def __contains__(self, path):
        return path.resolve() in self.written

    def add(self, target):
        # Appended photo by photo: a run killed half-way still knows what it wrote. The photo is written
        # either way; without its line, a later run over this folder merely sees it as a photo again.
        try:
            relative = target.resolve().relative_to(self.output_dir.resolve())
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(relative.as_posix()) + "\n")
        except (OSError, ValueError):
            pass


def find_inputs(args, output_dir, outputs):
    """(input file, path relative to the output dir) for every input argument; (argument, reason) for
    those that name nothing colorize can read; and how many files were left out as earlier outputs."""
    resolved_output_dir = output_dir.resolve()
    found, problems, ours = [], [], []

    def add_tree(base, files):
        # An output folder inside the tree mirrors into itself: none of it is input (older colorgan wrote
        # no outputs list). An output folder that is the tree or holds it: only the listed files are ours.
        nested_output = base.resolve() in resolved_output_dir.parents
        for f in sorted(files):
            name_parts = f.relative_to(base).parts
            # A dangling link is kept, so that it is reported as failed rather than silently missed.
            if not ((f.is_file() or f.is_symlink() and not f.exists()) and f.suffix.lower() in EXTENSIONS
                    and not any(p.startswith(".") for p in name_parts)):
                continue
            if f in outputs:
                ours.append(f)
            elif not (nested_output and resolved_output_dir in f.resolve().parents):
                found.append((f, f.relative_to(base)))

    for arg in args:
        path = pathlib.Path(arg)
        if path.is_dir():
            add_tree(path, path.rglob("*"))
        elif path.is_file():
            found.append((path, pathlib.Path(path.name)))
        elif path.exists():  # a FIFO, socket or device: never opened, since reading one may never end
            problems.append((arg, "not a regular file (a FIFO, socket or device); colorize reads image files"))
        elif glob.has_magic(arg):
            fixed = [part for part in pathlib.Path(arg).parts]
            fixed = fixed[:next(i for i, part in enumerate(fixed) if glob.has_magic(part))]
            matches = [pathlib.Path(m) for m in glob.glob(arg, recursive=True)]
            if not matches:
                problems.append((arg, "no such file, folder or matching glob"))
            add_tree(pathlib.Path(*fixed) if fixed else pathlib.Path("."), [m for m in matches if m.is_file()])
        else:
            problems.append((arg, "no such file, folder or matching glob"))
    return found, problems, len(ours)


def plan_jobs(inputs, output_dir, image_format, overwrite, summary):
    """Jobs for the inputs, skipping those whose output must not be written (one line for them all).

    An output that would be an input, the photo itself or another one (a folder coloured into itself),
    goes beside it under NAME_color.EXT instead: the user asked for colour copies, and a photo replaced
    by its colour version cannot be had back (colour leaves L as it was, but not the file's bytes)."""
    jobs, claimed, exists, beside = [], {}, [], []
    input_paths = {source.resolve() for source, _ in inputs}
    for source, relative in inputs:
        suffix = ("." + image_format if image_format != "same"
                  else ".png" if source.suffix.lower() in PALETTE_SUFFIXES else source.suffix)
        target = output_dir / relative.with_suffix(suffix)
        if target.resolve() in input_paths:
            target = target.with_name(target.stem + BESIDE_SUFFIX + target.suffix)
            if target.resolve() in input_paths:  # NAME_color.EXT is a photo of its own, not colorize's
                summary.failed += 1
                report("failed", source, f"its output {target} would replace an input photo of that name; "
                                         "pass another --output_dir")
                continue
            beside.append((source, target))
        key = target.resolve()
        if key in claimed:
            summary.failed += 1
            report("failed", source, f"its output {target} is also the output of {claimed[key]}; "
                                     "colourise the two in separate runs or rename one")
            continue
        claimed[key] = source
        if target.exists() and not overwrite:
            exists.append(source)
            continue
        jobs.append(Job(source, target))
    summary.skipped += len(exists)
    if beside:
        print(f"{_photos(beside)} would replace {'itself' if len(beside) == 1 else 'themselves'} or another "
              f"input in {output_dir}: writing {'it' if len(beside) == 1 else 'them'} beside the inputs as "
              f"NAME{BESIDE_SUFFIX}.EXT ({beside[0][0]} -> {beside[0][1]}{', ...' if len(beside) > 1 else ''})",
              file=sys.stderr, flush=True)
    # A rerun skips every photo already done: one line says so, not one line a photo.
    if exists:
        print(f"skipped {_photos(exists)} whose outputs exist in {output_dir}; pass --overwrite to replace "
              "them", file=sys.stderr, flush=True)
    return jobs


def _photos(sources):
    return f"{len(sources)} photo{'s' if len(sources) != 1 else ''}"


def check_writable(output_dir):
    """Fail before the model loads when nothing could be written (a read-only disk, a file in the way),
    rather than after every photo has been coloured."""
    outputs.check("--output_dir", output_dir, folder=True)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ColorganError(f"cannot make the output folder {output_dir} ({e.strerror or e}); pass "
                            "another --output_dir") from None


def colorize_files(colorizer, jobs, batch_size, summary, progress=True, max_pixels=None, written=None, hints=None):
    """Read, colourise in batches of equal-size photos, and write; counts results in `summary` and lists
    what it wrote in `written` (an OutputsList). ``hints``: (name, document) of the colour hints of the one
    job; hints that do not fit its photo raise a ColorganError before anything is written.

    Decoding the next photo and encoding the last one's output run in threads beside the model (PIL lets
    go of the GIL there), one of each at a time, so memory holds at most a photo ahead and one behind.
    """
    import concurrent.futures
    import threading

    import keras
    import numpy as np

    from colorgan import hints as colour_hints
    from colorgan import inference

    # The bar redraws one line; in a log file (no terminal) it would only add noise.
    bar = keras.utils.Progbar(len(jobs), unit_name="photo") if progress and jobs and sys.stdout.isatty() else None
    pending = {}  # (H, W, C) -> [(job, photo, its hints or None)]
    reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="colorize-read")
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="colorize-write")
    last_write = None
    counting = threading.Lock()  # the writer thread counts too

    def count(outcome):
        with counting:
            setattr(summary, outcome, getattr(summary, outcome) + 1)

    def fail(job, error):
        count("failed")
        report("failed", job.source, error)
        if bar:
            bar.add(1)

    def read(job):
        try:
            return photos.read_photo(job.source, max_pixels=max_pixels)
        except ColorganError as e:
            return e

    def write(job, rgb, icc_profile):
        try:
            photos.write_photo(job.target, rgb, icc_profile)
            if written is not None:
                written.add(job.target)
        except (ColorganError, OSError, ValueError) as e:
            return fail(job, e)
        count("done")
        if bar:
            bar.add(1)

    def finish(group):
        nonlocal last_write
        given = [h for _, _, h in group]
        try:
            outputs = colorizer.colorize_batch(np.stack([photo.pixels for _, photo, _ in group]),
                                               hints=given if any(h is not None for h in given) else None)
        except Exception as e:  # a model failure is reported per photo; the run goes on
            outputs = [e] * len(group)
        for (job, photo, _), rgb in zip(group, outputs):
            if isinstance(rgb, Exception):
                fail(job, rgb)
                continue
            if last_write is not None:
                last_write.result()
            last_write = writer.submit(write, job, rgb, photo.icc_profile)

    try:
        ahead = reader.submit(read, jobs[0]) if jobs else None
        for i, job in enumerate(jobs):
            photo = ahead.result()
            ahead = reader.submit(read, jobs[i + 1]) if i + 1 < len(jobs) else None
            if isinstance(photo, ColorganError):
                fail(job, photo)
                continue
            for note in photo.notes:
                report("note", job.source, note)
            resolved = colour_hints.resolve(hints[1], photo.pixels, hints[0]) if hints else None
            if photo.pixels[..., 0].size > inference.LARGE_PHOTO_PIXELS:  # alone, in strips: no company
                finish([(job, photo, resolved)])
                continue
            group = pending.setdefault(photo.pixels.shape, [])
            group.append((job, photo, resolved))
            if len(group) == batch_size:
                finish(pending.pop(photo.pixels.shape))
            elif sum(len(g) * g[0][1].pixels[..., 0].size for g in pending.values()) > PENDING_PIXELS:
                for shape in list(pending):
                    finish(pending.pop(shape))
        for group in pending.values():
            finish(group)
        if last_write is not None:
            last_write.result()
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)


def colorize(args, model=None, output_dir="colorized", image_format="same", overwrite=False, batch_size=8,
             progress=True, max_pixels=100_000_000, saturation=1.0, hints=None):
    """The whole command, callable from Python; returns the Summary. ``hints``: a hints JSON file for the one
    photo coloured."""
    from colorgan import hints as colour_hints
    from colorgan import inference

    if not args:
        raise ColorganError("no inputs: name image files, folders or globs to colourise")
    if batch_size < 1:
        raise ColorganError(f"--batch_size must be at least 1, got {batch_size}")
    if max_pixels < 0:
        raise ColorganError(f"--max_pixels must be 0 (no limit) or more, got {max_pixels}")
    inference.check_saturation(saturation)
    hint_document = colour_hints.load(hints) if hints else None  # a malformed file fails before any work
    output_dir = pathlib.Path(output_dir)
    summary, outputs = Summary(), OutputsList(output_dir)
    inputs, problems, ours = find_inputs(args, output_dir, outputs)
    if not inputs and not problems:  # "done 0" and status 0 would read as success
        raise ColorganError(f"found no photos to colour in {' '.join(map(str, args))}"
                            + (f": all {ours} photos there are colorize's own outputs, listed in {outputs.path}" if ours
                               else f" (folders are searched for {', '.join(EXTENSIONS)})"))
    for arg, reason in problems:
        summary.failed += 1
        report("failed", arg, reason)
    if hints and len(inputs) + len(problems) != 1:
        raise ColorganError(f"--hints={hints} gives the colour hints of one photo, and the inputs hold "
                            f"{len(inputs) + len(problems)}; colour that photo alone with them")
    jobs = plan_jobs(inputs, output_dir, image_format, overwrite, summary)
    if ours and not jobs:  # so that "done 0" over a folder of outputs says why
        print(f"left out {ours} files that colorize wrote earlier (listed in {outputs.path})",
              file=sys.stderr, flush=True)
    if jobs:
        check_writable(output_dir)
        colorizer = inference.load_colorizer(model, saturation)
        if hints and not colorizer.takes_hints:
            raise ColorganError(f"--hints: the model {colorizer.source} takes no colour hints; pass one trained "
                                "with them (colorgan train --config=hints_photos), or drop --hints")
        colorize_files(colorizer, jobs, batch_size, summary, progress, max_pixels or None, outputs,
                       (hints, hint_document) if hints else None)
    print(summary.line(), flush=True)
    return summary


def run(fv, args):
    """The command: exit status 0 when every photo was coloured or already had its output, 1 when any
    failed (2, raised as a ColorganError, when there was nothing to do)."""
    summary = colorize(args, fv.model, fv.output_dir, fv.format, fv.overwrite, fv.batch_size, fv.progress,
                       fv.max_pixels, fv.saturation, fv.hints)
    return 1 if summary.failed else 0
