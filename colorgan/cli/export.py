"""colorgan export: write a trained generator for serving, phones, or as one .keras file, and check it.

    colorgan export --format=saved_model --output=exported            # TF Serving: exported/colorgan/1/
    colorgan export --format=tflite --output=exported/tflite          # phones: float32, float16, int8
    colorgan export --format=keras --model=runs/mine --output=mine.keras
    colorgan export --format=onnx --output=exported                   # ONNX Runtime: exported/colorgan.onnx
    python export/tflite.py --output=exported/tflite                  # the same, from a source checkout

--model is a training run dir, a checkpoint (dir or prefix) or a .keras file; without it, the colorizer
that ships with colorgan. SavedModel signatures:
  serving_default   images: string [batch] (JPEG or PNG, any size) -> images_bytes: PNG strings at full size
                    (the _bytes suffix makes TF Serving's REST API return them base64-encoded)
  colorize_tensor   image: uint8 [H, W, 3 or 1]                     -> image: uint8 [H, W, 3]
  predict_ab        l: float32 [batch, S, S, 1] (L/50 - 1)          -> ab: float32 [batch, S, S, 2] (ab/110)
                    (a model with colour hints: also hints: float32 [batch, S, S, 3], their maps)
  colorize_with_hints  (a model with colour hints) images, hint_points: float32 [batch, K, 2] (x, y in each photo's
                    pixels; negative: padding), hint_colors: uint8 [batch, K, 3] (sRGB) -> images_bytes
Check it with `saved_model_cli show --all --dir OUT/NAME/VERSION`. TFLite files hold only the L -> ab
generator (batch 1) with a metadata JSON beside each; the .onnx file holds it with a free batch
("l" [N, S, S, 1] -> "ab" [N, S, S, 2], see colorgan/onnx_export.py); a model with colour hints takes their
maps as a second input, "hints" [N, S, S, 3]. For such a model the checks run half the photos with 10 hints. Every TFLite variant, the .onnx and
the .keras file are run on real validation photos and compared with the source model (max and mean |ab|
in Lab units, PSNR of the colours).
"""
import functools
import pathlib
import types

from absl import flags

from colorgan.errors import ColorganError

FORMATS = ("saved_model", "tflite", "keras", "onnx")
DEFAULT_OUTPUT = {"saved_model": "exported", "tflite": "exported/tflite", "keras": "exported/colorgan.keras",
                  "onnx": "exported"}


def define_flags(fv, formats=FORMATS):
    flags.DEFINE_enum("format", formats[0], formats, "What to write.", flag_values=fv)
    flags.DEFINE_string("model", None, "Training run dir, checkpoint (dir or prefix) or .keras file "
                        "(default: the colorizer shipped with colorgan).", flag_values=fv)
    flags.DEFINE_string("output", None, "saved_model: the base folder (the model goes to OUTPUT/NAME/VERSION); "
                        "tflite: the folder for NAME_VARIANT.tflite; keras: the .keras file; onnx: the folder for "
                        "NAME.onnx. Default: "
                        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_OUTPUT.items()) + ".", flag_values=fv)
    flags.DEFINE_string("name", "colorgan", "Model name: the SavedModel folder TF Serving's --model_base_path "
                        "points into, or the .tflite and .onnx file stem.", flag_values=fv)
    flags.DEFINE_integer("version", None, "SavedModel version; default one above the highest already there.",
                         flag_values=fv)
    flags.DEFINE_list("variants", ["float32", "float16", "int8"], "TFLite variants: float32, float16, int8, "
                      "dynamic_int8 (26-50x slower than float on x86).", flag_values=fv)
    flags.DEFINE_enum("weights_dtype", "float16", ["float16", "float32"], "How a .keras file stores its weights.",
                      flag_values=fv)
    flags.DEFINE_string("data", "samples", "Photo source: int8 calibration (train split), parity checks (val split).",
                        flag_values=fv)
    flags.DEFINE_integer("calibration_photos", 100, "Photos for the int8 representative dataset.", flag_values=fv)
    flags.DEFINE_integer("parity_photos", 20, "Validation photos for the parity checks.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace files (or a SavedModel --version) that are already there, "
                      "the --model itself included.", flag_values=fv)


def planned_outputs(fv):
    """(flag check arguments) for what --format writes at --output: a file, or files in a folder."""
    from colorgan import inference
    if fv.format == "keras":
        return dict(folder=False)
    if fv.format == "saved_model":  # a new version folder, unless --version names one (export_saved_model)
        return dict(folder=True)
    stems = [f"{fv.name}_{variant}" for variant in fv.variants] if fv.format == "tflite" else [fv.name]
    suffix = ".tflite" if fv.format == "tflite" else ".onnx"
    return dict(folder=True, replaces=[stem + end for stem in stems for end in (suffix, inference.METADATA_SUFFIX)])


def command_for(image_format):
    """This command with --format fixed, for run_module: what export/FORMAT.py in a source checkout runs.
    Its --format takes that format alone, so that `export/tflite.py --format=onnx` is refused."""
    return types.SimpleNamespace(
        __doc__=f"python export/{image_format}.py [--flags]: colorgan export --format={image_format}.\n\n{__doc__}",
        define_flags=functools.partial(define_flags, formats=(image_format,)), run=run)


def run(fv, args):
    if args:
        raise ColorganError(f"unexpected arguments {args}: pass everything as --flags")
    from colorgan import export, memory, outputs, saving
    output = fv.output or DEFAULT_OUTPUT[fv.format]
    if fv.format == "keras" and not output.endswith(".keras"):
        raise ColorganError(f"--output={output}: a Keras model file must end in .keras")
    if fv.format == "tflite":
        unknown = sorted(set(fv.variants) - set(export.VARIANTS))
        if unknown:
            raise ColorganError(f"unknown --variants {', '.join(unknown)}: use {', '.join(export.VARIANTS)}")
    # Before the model loads: a path that cannot be written, or a file that would be replaced, fails now.
    outputs.check("--output", output, overwrite=fv.overwrite, **planned_outputs(fv))
    version = pathlib.Path(output) / fv.name / str(fv.version)
    if fv.format == "saved_model" and fv.version is not None and version.exists() and not fv.overwrite:
        raise ColorganError(f"{version} already exists; pick another --version, or pass --overwrite to replace it")
    for flag in ("parity_photos", "calibration_photos"):
        if fv[flag].value < 1:
            raise ColorganError(f"--{flag} must be at least 1, got {fv[flag].value}")
    generator, image_size = saving.load_generator(fv.model)
    source = fv.model or str(saving.DEFAULT_GENERATOR)
    # The photos' L at the model's size stay in memory for the checks (and the int8 calibration).
    calibration = fv.calibration_photos if fv.format == "tflite" and "int8" in fv.variants else 0
    memory.refuse_over((fv.parity_photos + calibration) * image_size ** 2 * 8,
                       f"--parity_photos={fv.parity_photos}" + (f" and --calibration_photos={calibration}"
                                                                if calibration else "")
                       + f" at the model's {image_size} x {image_size}", "use fewer photos")
    writers = {"saved_model": write_saved_model, "tflite": write_tflite, "keras": write_keras, "onnx": write_onnx}
    writers[fv.format](fv, generator, image_size, source, output)
    return 0


def write_saved_model(fv, generator, image_size, source, output):
    from colorgan import export
    from colorgan.models import hint_branch
    path = export.export_saved_model(generator, image_size, output, fv.name, fv.version, source=source,
                                     overwrite=fv.overwrite)
    extra = ", colorize_with_hints" if hint_branch.takes_hints(generator) else ""
    print(f"wrote {path} (image size {image_size}; signatures serving_default, colorize_saturated, colorize_tensor, "
          f"predict_ab{extra})")


def check_inputs(fv, generator, image_size, split, count):
    """Photos for the checks (L, with simulated hints for a model that takes them)."""
    from colorgan import export
    from colorgan.models import hint_branch
    return export.l_batches(fv.data, split, image_size, count, with_hints=hint_branch.takes_hints(generator))


def write_keras(fv, generator, image_size, source, output):
    from colorgan import export, inference, saving
    path = saving.save_generator(generator, output, fv.weights_dtype)
    written = inference.load_colorizer(str(path))
    parity_l = check_inputs(fv, generator, image_size, "val", fv.parity_photos)
    check = export.parity(inference.KerasColorizer(generator, image_size), written, parity_l)
    print(f"wrote {path}: {path.stat().st_size / 1e6:.1f} MB, {fv.weights_dtype} weights; against the source "
          f"on {len(parity_l)} photos: max |ab| {check['max_ab_diff']:.3f}, mean |ab| {check['mean_ab_diff']:.4f}, "
          f"PSNR {check['psnr_db']:.1f} dB")


def write_tflite(fv, generator, image_size, source, output):
    from colorgan import export, inference
    reference = inference.KerasColorizer(generator, image_size, source=source)
    parity_l = check_inputs(fv, generator, image_size, "val", fv.parity_photos)
    calibration_l = (check_inputs(fv, generator, image_size, "train", fv.calibration_photos)
                     if "int8" in fv.variants else None)
    keras_seconds = export.seconds_per_photo(reference, parity_l[0])
    print(f"{'variant':<13} {'size MB':>8} {'ms/photo':>9} {'x keras':>8} {'max |ab|':>9} {'mean |ab|':>10} "
          f"{'PSNR dB':>8}   ({len(parity_l)} photos from {fv.data}, Keras {keras_seconds * 1e3:.1f} ms/photo)")
    for variant in fv.variants:
        flatbuffer = export.convert_tflite(generator, image_size, variant, calibration_l)
        path = pathlib.Path(output) / f"{fv.name}_{variant}.tflite"
        candidate = inference.TFLiteColorizer(path, model_content=flatbuffer)
        check = export.parity(reference, candidate, parity_l)
        seconds = export.seconds_per_photo(candidate, parity_l[0])
        # The measured figures go into the metadata, so they travel with the file.
        export.write_tflite(flatbuffer, path, image_size, variant, source=source, parity=check,
                            seconds_per_photo_x86=round(seconds, 5))
        print(f"{variant:<13} {len(flatbuffer) / 1e6:>8.2f} {seconds * 1e3:>9.1f} {seconds / keras_seconds:>8.1f} "
              f"{check['max_ab_diff']:>9.3f} {check['mean_ab_diff']:>10.4f} {check['psnr_db']:>8.1f}")


def write_onnx(fv, generator, image_size, source, output):
    from colorgan import export, inference, onnx_export
    model = onnx_export.convert_onnx(generator, image_size)
    path = pathlib.Path(output) / f"{fv.name}.onnx"
    candidate = inference.ONNXColorizer(path, model_content=model.SerializeToString())
    parity_l = check_inputs(fv, generator, image_size, "val", fv.parity_photos)
    check = export.parity(inference.KerasColorizer(generator, image_size), candidate, parity_l)
    onnx_export.write_onnx(model, path, image_size, source=source, parity=check)
    inputs = f"l [N, {image_size}, {image_size}, 1]" + (
        f" and hints [N, {image_size}, {image_size}, 3]" if candidate.takes_hints else "")
    print(f"wrote {path}: {path.stat().st_size / 1e6:.1f} MB, opset {onnx_export.OPSET}, input {inputs} -> ab; against the source on {len(parity_l)} photos: max |ab| {check['max_ab_diff']:.5f}, "
          f"mean |ab| {check['mean_ab_diff']:.6f} (Lab units), PSNR {check['psnr_db']:.1f} dB")
