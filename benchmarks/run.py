"""Speed and memory of colorgan: training, inference and the input pipeline, beside the PyTorch original.

    python benchmarks/run.py                      # everything, 15-20 minutes on an idle 2-core CPU
    python benchmarks/run.py --compare            # ... and the PyTorch twins (needs the `bench` extra)
    python benchmarks/run.py --only=train --train_models=lite0_patchgan --compare
    python benchmarks/run.py --only=infer,pipeline
    python benchmarks/run.py --smoke              # tiny models, 2 steps: checks that it all still works
    python benchmarks/run.py --only=train --train_models=baseline --xla=off --profile_ops

Prints one line per result as it is measured, then Markdown tables, then the results as JSON (also
written to --json). Every figure is the median of several timed calls after warm-up calls; each case
runs in its own spawned process, and cases that are compared are timed in turns (harness.py).

--compare adds each set-up's PyTorch twin (cases.TORCH_TWINS): the original pix2pix (torch_reference.py)
beside the baseline, colorgan's EfficientNet-Lite0 U-Net and 32-filter PatchGAN (torch_lite0.py) beside
lite0_patchgan. A twin's modes (--torch_modes) are first timed against each other and the fastest joins
its set-up's turns: float32 NCHW, float32 channels_last, and bfloat16 autocast + channels_last where the
CPU has bf16 units (avx512_bf16 / amx_bf16) or the GPU has them, each eager and through torch.compile
with fused Adam (_compile; its first step compiles, minutes on a CPU; --smoke leaves these out of auto).
colorgan's side of the comparison is its step at the precision --mixed_precision resolves to
(auto: bfloat16 on CPUs with AVX512-BF16/AMX, see colorgan.training.precision), XLA off.
Utilisation is against the peak of the precision each row computes in: a matmul measured on this machine
(--matmul_size), or the estimates in report.py.

--profile_ops runs the baseline train step (XLA off, the resolved precision) under
tf.profiler.experimental for --profile_steps steps after one warm-up step, and reports the top
--profile_top ops and op types by self time per step (from the profiler's framework_op_stats). The
trace is kept in --profile_dir (default: a new /tmp/colorgan-profile-* folder, printed): open it with
`tensorboard --logdir=DIR` (Profile tab, needs tensorboard-plugin-profile) for the timeline.

Modules: cases.py (what is measured), harness.py (processes, timing, FLOPs), sections.py (which cases
run together, the rows), report.py (peaks, targets, tables, JSON); this file: flags in, report out.
"""
import os
import shutil
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # children inherit it: keep TF's start-up chatter out

from absl import flags  # noqa: E402

import cases  # noqa: E402
import report as report_lib  # noqa: E402
import sections  # noqa: E402
from harness import Workers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SECTIONS = ("train", "pipeline", "infer", "profile")
TORCH_MODES = ("float32", "channels_last", "bfloat16_channels_last", "float32_compile", "channels_last_compile",
               "bfloat16_channels_last_compile")  # torch_reference.MODES
DEFAULT_DATA = "folder:" + os.path.normpath(os.path.join(REPO, "..", "shared", "data", "train"))


def define_flags(fv):
    d = dict(flag_values=fv)
    flags.DEFINE_list("only", ["train", "pipeline", "infer"], "Sections: train,pipeline,infer,profile.", **d)
    flags.DEFINE_bool("compare", False, "Time each set-up's PyTorch twin alongside (needs torch).", **d)
    flags.DEFINE_bool("smoke", False, "Tiny models at 32 px, 2 steps: a functional check (of the baseline "
                      "unless --train_models is given).", **d)
    flags.DEFINE_integer("image_size", 256, "Training crop and model input size.", **d)
    flags.DEFINE_integer("batch_size", 16, "Training batch size.", **d)
    flags.DEFINE_list("train_models", list(cases.TRAIN_MODELS), ",".join(cases.TRAIN_MODELS), **d)
    flags.DEFINE_list("xla", ["off", "on"], "off,on: train without and/or with XLA.", **d)
    flags.DEFINE_enum("mixed_precision", "auto", ["auto", "off", "float32", "float16", "bfloat16",
                                                  "bfloat16+depthwise_float32"],
                      "The mixed-precision train rows and colorgan's side of --compare; auto: by the hardware "
                      "(colorgan.training.precision.by_hardware, not the probe); off: float32 rows only.", **d)
    flags.DEFINE_integer("onednn", 1, "1: add a baseline row with TF_ENABLE_ONEDNN_OPTS=1.", **d)
    flags.DEFINE_integer("warmup", 1, "Untimed steps of the baseline (the first traces).", **d)
    flags.DEFINE_integer("steps", 5, "Timed steps of the baseline.", **d)
    flags.DEFINE_integer("model_warmup", 1, "Untimed steps of the other models.", **d)
    flags.DEFINE_integer("model_steps", 2, "Timed steps of the other models.", **d)
    flags.DEFINE_list("infer_formats", ["keras", "saved_model", "tflite"], "Inference formats.", **d)
    flags.DEFINE_list("tflite_variants", list(cases.TFLITE_VARIANTS), "TFLite variants.", **d)
    flags.DEFINE_list("tflite_threads", ["1", "2"], "TFLite interpreter thread counts.", **d)
    flags.DEFINE_integer("infer_repeats", 3, "Timed calls per inference figure.", **d)
    flags.DEFINE_string("photo_size", "1024x768", "W x H of the full-resolution JPEG.", **d)
    flags.DEFINE_string("data", DEFAULT_DATA, "Photo source of the pipeline (and int8 calibration).", **d)
    flags.DEFINE_integer("pipeline_batches", 8, "Batches per timed pipeline call.", **d)
    flags.DEFINE_integer("pipeline_runs", 5, "Timed pipeline calls.", **d)
    flags.DEFINE_bool("pipeline_cache", False, "Time the pipeline on --cache's decoded pixels.", **d)
    flags.DEFINE_list("torch_modes", ["auto"], "PyTorch modes timed for --compare (the fastest is compared): "
                      f"{','.join(TORCH_MODES)}; auto: those that can win on this machine.", **d)
    flags.DEFINE_integer("torch_select_steps", 2, "Timed train steps per PyTorch mode when choosing one.", **d)
    flags.DEFINE_bool("profile_ops", False, "Add the profile section: top ops of the baseline train step.", **d)
    flags.DEFINE_integer("profile_steps", 3, "Profiled baseline steps (after one warm-up step).", **d)
    flags.DEFINE_string("profile_model", "baseline", "The training set-up the profile runs (--train_models' names).",
                        **d)
    flags.DEFINE_integer("profile_top", 15, "Ops (and op types) listed by the profile.", **d)
    flags.DEFINE_string("profile_dir", "", "Where the profiler trace goes; default: a new temporary folder.", **d)
    flags.DEFINE_integer("matmul_size", 4096, "Size of the matmul that measures the float32 and bfloat16 peaks; "
                         "0: estimate them from the clock instead.", **d)
    flags.DEFINE_float("peak_gflops", None, "Device float32 peak in GFLOP/s; default: measured (--matmul_size).", **d)
    flags.DEFINE_float("peak_gflops_bf16", None, "Device bfloat16/float16 peak; default: estimated for CPUs.", **d)
    flags.DEFINE_integer("seed", 0, "Seed of weights and batches.", **d)
    flags.DEFINE_string("json", "", "Also write the JSON report to this file.", **d)


def settings(fv):
    """The flags as one namespace, checked, with --smoke's sizes applied."""
    from colorgan.errors import ColorganError
    args = types.SimpleNamespace(**{name: fv[name].value for name in fv})
    for name, given, allowed in (("only", args.only, SECTIONS), ("train_models", args.train_models, cases.TRAIN_MODELS),
                                 ("profile_model", [args.profile_model], cases.TRAIN_MODELS),
                                 ("xla", args.xla, ("off", "on")), ("torch_modes", args.torch_modes,
                                                                   TORCH_MODES + ("auto",))):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ColorganError(f"unknown --{name} {','.join(unknown)}: use {','.join(allowed)}")
    if args.profile_ops and "profile" not in args.only:
        args.only = args.only + ["profile"]
    args.xla = [x == "on" for x in args.xla]
    args.tflite_threads = [int(t) for t in args.tflite_threads]
    args.photo_size = tuple(int(v) for v in args.photo_size.lower().split("x"))
    args.unet_depth, args.torch_filters, args.model_overrides = 8, 64, {}
    if args.image_size < 256:  # pix2pix's own unet_128 (7 downs) and smaller: the deepest U-Net that fits
        args.unet_depth = max(5, args.image_size.bit_length() - 1)
        args.model_overrides = {"baseline": dict(generator_options=f"depth={args.unet_depth}")}
    if args.smoke:
        # Tiny versions of each set-up, at 32 px, two timed steps: seconds, not minutes.
        args.image_size, args.batch_size, args.unet_depth = 32, 2, 5
        args.warmup = args.model_warmup = 1
        args.steps = args.model_steps = args.infer_repeats = args.pipeline_runs = 2
        args.pipeline_batches, args.photo_size, args.torch_select_steps, args.profile_steps = 2, (128, 96), 1, 1
        args.matmul_size = 256
        args.xla, args.onednn = [False], 0
        if not fv["train_models"].present:
            args.train_models = ["baseline"]
        args.tflite_variants, args.tflite_threads = ["float16"], [1]
        args.torch_filters = 8
        args.model_overrides = {"baseline": dict(generator_options="base_filters=8,depth=5",
                                                 critic_options="base_filters=8")}
    if args.data.startswith("folder:") and not os.path.isdir(args.data[len("folder:"):]):
        print(f"{args.data} not found: the pipeline reads the packaged sample photos instead", file=sys.stderr)
        args.data = "samples"
    return args


def resolve_torch_modes(requested, device, compile=True):
    """--torch_modes=auto: all modes where there is bfloat16 hardware (CPU avx512_bf16/amx_bf16, GPU compute
    capability 8+), else the float32 ones (as torch_reference.applicable_modes decides it in a worker);
    the _compile ones unless `compile` is false. Where torch.compile does not work, a _compile mode runs
    eager and says so (the parent process does not import torch to find out)."""
    if requested != ["auto"]:
        return [m for m in requested if m != "auto"]
    gpu = device.get("gpu")
    bf16 = ((gpu.get("compute_capability") or (0,))[0] >= 8 if gpu
            else bool({"avx512_bf16", "amx_bf16"} & set(device["cpu_flags"])))
    return [m for m in TORCH_MODES if (bf16 or not m.startswith("bfloat16")) and (compile or "_compile" not in m)]


def new_report(args):
    return {"command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average_before": os.getloadavg(),
            "settings": vars(args), "train": [], "infer": [], "pipeline": None, "flops": {},
            "comparisons": {}, "torch_modes": {}, "skipped": []}


def run(fv, positional):
    from colorgan.errors import ColorganError
    if positional:
        raise ColorganError(f"unexpected arguments {positional}: pass everything as --flags")
    args = settings(fv)
    if args.compare:
        import importlib.util
        if importlib.util.find_spec("torch") is None:
            raise ColorganError("--compare needs torch: pip install -e '.[bench]' (CPU build: "
                                "--index-url https://download.pytorch.org/whl/cpu)")
    started, report = time.time(), new_report(args)
    workdir = tempfile.mkdtemp(prefix="colorgan-bench-")
    workers = Workers(reuse=args.smoke)
    try:
        run_sections(args, workers, report, workdir)
    finally:
        workers.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report_lib.check_targets(report)
    report["load_average_after"] = os.getloadavg()
    report["wall_seconds"] = time.time() - started
    report_lib.write(report, args.json)
    return 0


def run_sections(args, workers, report, workdir):
    precision_flag = "float32" if args.mixed_precision == "off" else args.mixed_precision
    with workers.case(cases.prepare, workdir=workdir, image_size=args.image_size,
                      train_models=args.train_models if "train" in args.only else [],
                      overrides=args.model_overrides, infer="infer" in args.only, data=args.data,
                      photo_size=args.photo_size, tflite_variants=args.tflite_variants, seed=args.seed,
                      mixed_precision=precision_flag, matmul_size=args.matmul_size) as prep:
        prepared = prep.info
    device, precision = prepared["device"], prepared["precision"]
    report.update(device=device, flops=prepared["flops"], precision=precision)
    report["matmul_peaks"] = prepared["matmul_peaks"]
    report["peaks"], report["peak_formulas"] = report_lib.estimate_peaks(
        device, args.peak_gflops, args.peak_gflops_bf16, prepared["matmul_peaks"], args.matmul_size)
    report["peak_gflops"] = report["peaks"].get("float32")
    # --smoke checks that each path runs in seconds; compiling even its tiny models takes a minute.
    args.torch_modes = resolve_torch_modes(args.torch_modes, device, compile=not args.smoke)
    if not device["gpu"]:
        report["skipped"].append("GPU: none on this machine (GPU memory is reported where there is one)")
    if "train" in args.only:
        sections.train_section(args, workers, report, precision)
    if "pipeline" in args.only:
        sections.pipeline_section(args, workers, report)
    if "infer" in args.only:
        sections.infer_section(args, workers, report, prepared)
    if "profile" in args.only:  # last: the profiler and its policy stay out of the other cases' processes
        sections.profile_section(args, workers, report, precision)


if __name__ == "__main__":
    sys.path.insert(0, REPO)  # colorgan from this checkout when it is not installed
    from colorgan import cli
    sys.exit(cli.run_module(sys.modules[__name__], sys.argv))
