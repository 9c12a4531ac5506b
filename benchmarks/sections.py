"""The report's sections: which cases run side by side, how often they are called, and the rows they give.

    train     adversarial steps/s of each set-up, XLA off and on, float32 and the resolved mixed precision
              (and a TF_ENABLE_ONEDNN_OPTS=1 baseline row); with --compare each set-up's PyTorch twin
              (cases.TORCH_TWINS: the original beside the baseline, torch_lite0.py beside lite0_patchgan)
              beside it, in the twin's fastest mode here (choose_torch_mode)
    pipeline  images/s of the training input pipeline
    infer     each saved form of the baseline generator (and the original's forward pass with --compare)
    profile   the top ops of the baseline step under the TensorFlow profiler (--profile_ops)

`args` is the run's settings (run.py); every section appends its rows to `report`.
"""
import contextlib
import os
import sys
import tempfile

import cases
import report as report_lib
from harness import CaseFailed, measure


def peak(report, precision):
    """The peak of what a row computes in: bfloat16+depthwise_float32 is judged as bfloat16."""
    return report["peaks"].get(precision.split("+")[0])


def failed(rows, error):
    for row in rows:
        row["error"] = str(error).splitlines()[0]
    print(f"  failed: {error}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# The PyTorch original's modes


def torch_twin(args, name):
    """cases.train_torch's arguments for set-up `name`'s PyTorch twin, or None where it has none."""
    if name not in cases.TORCH_TWINS:
        return None
    kwargs = dict(image_size=args.image_size, batch_size=args.batch_size, seed=args.seed, model=name,
                  **cases.TORCH_TWINS[name][2])
    if name == "baseline":  # the seeds' pix2pix as wide and as deep as the run's baseline U-Net
        kwargs.update(ngf=args.torch_filters, ndf=args.torch_filters, num_downs=args.unet_depth)
    return kwargs


def torch_modes_key(section, name="baseline"):
    """Where report["torch_modes"] keeps a choice: "train" and "infer" for the seeds' pix2pix, as ever."""
    return section if name == "baseline" else f"{section} {name}"


def choose_torch_mode(args, workers, report, section, name="baseline"):
    """Time every applicable mode of a PyTorch twin against the others, in turns; the fastest one wins.

    train: one adversarial step of set-up `name`'s twin (--torch_select_steps timed calls); infer: the
    original generator's batch-1 forward pass.
    """
    modes = args.torch_modes
    if len(modes) == 1:
        return modes[0]
    if section == "train":
        function, run, repeats, kwargs = cases.train_torch, "step", args.torch_select_steps, torch_twin(args, name)
    else:
        function, run, repeats = cases.infer_torch, "b1", args.infer_repeats
        kwargs = dict(image_size=args.image_size, ngf=args.torch_filters, num_downs=args.unet_depth)
    times, notes = {}, {}
    with contextlib.ExitStack() as stack:
        running = []
        for mode in modes:
            try:
                worker = stack.enter_context(workers.case(function, "torch", mode=mode, **kwargs))
                running.append((mode, worker))
                if worker.info.get("compile_note"):  # a _compile mode that runs eager here
                    notes[mode] = worker.info["compile_note"]
            except CaseFailed as e:
                times[mode] = {"error": str(e).splitlines()[0]}
        try:
            # One warm-up call: the _compile modes compile in it (reported as first_call_s).
            for (mode, _), timing in zip(running, measure([(w, run) for _, w in running], 1, repeats)):
                times[mode] = timing
        except CaseFailed as e:
            times.update({mode: {"error": str(e).splitlines()[0]} for mode, _ in running})
    timed = [m for m in modes if "median_s" in times.get(m, {})]
    chosen = min(timed, key=lambda m: times[m]["median_s"]) if timed else "float32"
    key = torch_modes_key(section, name)
    report["torch_modes"][key] = {"run": run, "times": {m: times[m] for m in modes if m in times},
                                  "chosen": chosen, "notes": notes}
    print(f"[{section}] " + report_lib.modes_line(key, report["torch_modes"][key]), flush=True)
    return chosen


# ------------------------------------------------------------------------------------------------
# Training


def train_section(args, workers, report, precision):
    """Adversarial steps per second of each model, XLA off and on, float32 and `precision` (the resolved
    --mixed_precision). The variants of one model (and, with --compare, its PyTorch twin in the twin's
    fastest mode) are alive together and timed in turns, so that they see the same machine load."""
    for name in args.train_models:
        twin = args.compare and name in cases.TORCH_TWINS
        torch_mode = choose_torch_mode(args, workers, report, "train", name) if twin else None
        train_model(args, workers, report, name, precision, torch_mode)
    if precision == "float32":
        report["skipped"].append(f"mixed precision training: --mixed_precision={args.mixed_precision}"
                                 if args.mixed_precision != "auto" else "mixed precision training: this device "
                                 "has no fast float16/bfloat16 arithmetic (no GPU; no AVX512-BF16/AMX on the CPU)")


def train_variants(args, name, precision):
    """(xla, precision, forced oneDNN) of each colorgan row of one model."""
    precisions = ["float32", precision]
    if "+depthwise_float32" in precision and not has_depthwise(args, name):
        precisions[1] = "bfloat16"  # the same model as plain bfloat16: no depthwise convolutions to keep
    elif "+depthwise_float32" in precision:
        precisions.insert(1, "bfloat16")  # what keeping them in float32 gains
    variants = [(xla, p, False) for xla in args.xla for p in dict.fromkeys(precisions)]
    if args.onednn and name == "baseline":
        # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512/AMX units; this
        # row shows what they do here (TF_ENABLE_ONEDNN_OPTS=1, read when TensorFlow is imported).
        variants.append((False, "float32", True))
    return variants


def has_depthwise(args, name):
    """Whether the set-up's generator or critic has depthwise convolutions (the EfficientNet-Lite and
    MobileNet encoders, the projected critic's Lite features)."""
    model = cases.model_config(name, args.model_overrides)
    return any(k in model["generator"] for k in ("efficientnet", "mobilenet")) or model["critic"] == "projected"


def train_model(args, workers, report, name, precision, torch_mode):
    model = cases.model_config(name, args.model_overrides)
    variants = train_variants(args, name, precision)
    warmup, steps = (args.warmup, args.steps) if name == "baseline" else (args.model_warmup, args.model_steps)
    f = report["flops"].get(name)
    # Model FLOPs of one step per image, as the original counts its work: generator forward and
    # backward (3 G), the critic on real and fake for its update (2 x 3 D), on fake for the generator's (3 D).
    step_flops = 3 * f["generator"] + 9 * f["critic"] if f else None
    size, batch = args.image_size, args.batch_size
    rows = [{"model": name, "framework": "keras", "generator": model["generator"], "critic": model["critic"],
             "critic_options": model["critic_options"], "objective": model["objective"], "xla": xla,
             "precision": p, "batch_size": batch, "image_size": size, "train_flops_per_image": step_flops}
            for xla, p, _ in variants]
    if torch_mode:
        rows.append(dict(rows[0], model="baseline (PyTorch original)" if name == "baseline" else f"{name} (PyTorch)",
                         framework="torch", xla=False,
                         precision="bfloat16" if torch_mode.startswith("bfloat16") else "float32",
                         onednn="torch default", torch_mode=torch_mode))
    try:
        with contextlib.ExitStack() as stack:
            running = [stack.enter_context(workers.case(
                cases.train_keras, env={"TF_ENABLE_ONEDNN_OPTS": "1"} if onednn else None, image_size=size,
                batch_size=batch, jit_compile=xla, mixed_precision=p, seed=args.seed, **model))
                for xla, p, onednn in variants]
            if torch_mode:
                running.append(stack.enter_context(workers.case(
                    cases.train_torch, "torch", mode=torch_mode, **torch_twin(args, name))))
                rows[-1]["torch_info"] = running[-1].info
            for row, worker, timing in zip(rows, running, measure([(w, "step") for w in running], warmup, steps)):
                row.update(timing, **worker.report())
                row["precision"] = worker.info["precision"]  # as the case resolved it
                if "onednn" in worker.info:
                    row["onednn"] = {True: "on", False: "off"}.get(worker.info["onednn"], "?")
    except CaseFailed as e:
        failed(rows, e)
    for row in rows:
        if "median_s" in row:
            row["images_per_second"] = batch / row["median_s"]
            row["flop_utilisation"] = report_lib.utilisation(step_flops, row["images_per_second"],
                                                             peak(report, row["precision"]))
        report["train"].append(row)
        report_lib.print_row("train", row)
    if torch_mode:
        # colorgan as --mixed_precision resolves here (XLA off), against the twin's fastest mode; the
        # baseline's keys are the issue's target (report.check_targets), the other set-ups' carry their name.
        ours = rows[variants.index((False, precision, False))] if (False, precision, False) in variants else rows[0]
        suffix = "" if name == "baseline" else f"_{name}"
        if "images_per_second" in ours and "images_per_second" in rows[-1]:
            report["comparisons"].update({
                f"train_keras_over_torch{suffix}": ours["images_per_second"] / rows[-1]["images_per_second"],
                f"train_keras_precision{suffix}": ours["precision"], f"train_keras_xla{suffix}": ours["xla"],
                f"train_torch_mode{suffix}": torch_mode})


# ------------------------------------------------------------------------------------------------
# Input pipeline and inference


def pipeline_section(args, workers, report):
    with workers.case(cases.pipeline, data=args.data, image_size=args.image_size, batch_size=args.batch_size,
                      batches=args.pipeline_batches, cache=args.pipeline_cache) as worker:
        (t,) = measure([(worker, "batches")], 1, args.pipeline_runs)
        images = args.batch_size * args.pipeline_batches
        report["pipeline"] = dict(t, **worker.report(), data=args.data, batch_size=args.batch_size,
                                  cache=args.pipeline_cache,
                                  images_per_run=images, images_per_second=images / t["median_s"],
                                  cores=os.cpu_count())
    report_lib.print_row("pipeline", report["pipeline"])


def infer_formats(args):
    """(kind, TFLite variant, threads) of each inference row."""
    formats = []
    for kind in args.infer_formats:
        if kind == "tflite":
            formats += [("tflite", v, t) for v in args.tflite_variants for t in args.tflite_threads]
        else:
            formats.append((kind, None, None))
    return formats


def infer_section(args, workers, report, prepared):
    torch_mode = choose_torch_mode(args, workers, report, "infer") if args.compare else None
    flops = report["flops"]["baseline"]["generator"]
    with contextlib.ExitStack() as stack:
        torch_worker = stack.enter_context(workers.case(
            cases.infer_torch, "torch", image_size=args.image_size, ngf=args.torch_filters,
            num_downs=args.unet_depth, mode=torch_mode)) if torch_mode else None
        for kind, variant, threads in infer_formats(args):
            row = infer_row(args, workers, report, prepared, kind, variant, threads, torch_worker)
            # Against the fp32 peak of the cores in use; int8 models do integer arithmetic, which that
            # peak does not bound, so they get no figure.
            fp32 = variant is None or "int8" not in variant
            row["flop_utilisation_b1"] = report_lib.utilisation(
                flops, 1e3 / row["latency_b1_ms"], peak(report, "float32"), threads) \
                if "latency_b1_ms" in row and fp32 else None
            report["infer"].append(row)
            report_lib.print_row("infer", row)
        if torch_worker is not None:
            report["infer"].append(torch_infer_row(args, report, torch_worker, flops))
            report_lib.print_row("infer", report["infer"][-1])


def infer_row(args, workers, report, prepared, kind, variant, threads, torch_worker):
    key = kind if variant is None else f"tflite_{variant}"
    row = {"format": kind if variant is None else f"tflite {variant}", "threads": threads,
           "image_size": args.image_size, "size_mib": prepared["sizes_mib"].get(key)}
    repeats = args.infer_repeats
    try:
        with workers.case(cases.infer, kind=kind, path=prepared["paths"][key], image_size=args.image_size,
                          photo=prepared["photo"], threads=threads) as worker:
            (b1,) = measure([(worker, "b1")], 1, repeats)
            row["latency_b1_ms"] = 1e3 * b1["median_s"]
            (b16,) = measure([(worker, "b16")], 1, max(1, repeats // 2))
            row["throughput_b16_img_s"] = 16 / b16["median_s"]
            jobs = [(worker, "fullres")]
            target = torch_worker and variant == "float16" and threads == 1
            if target:  # the third target: alternate with the original's 256 px forward pass
                jobs.append((torch_worker, "b1"))
            full = measure(jobs, 1, repeats)
            row["fullres_ms"] = 1e3 * full[0]["median_s"]
            if target:
                report["comparisons"]["fullres_tflite_fp16_1t_ms"] = row["fullres_ms"]
                report["comparisons"]["torch_forward_b1_alternating_ms"] = 1e3 * full[1]["median_s"]
            if kind == "saved_model":
                (s,) = measure([(worker, "serving")], 1, repeats)
                row["fullres_serving_png_ms"] = 1e3 * s["median_s"]
            row.update(worker.report())
            # What colouring a photo costs beyond the network: Lab conversions and resizes
            # at full resolution (the colorize stage less one batch-1 prediction).
            row["fullres_pre_post_ms"] = 1e3 * row["stages"]["colorize"] - row["latency_b1_ms"]
    except CaseFailed as e:
        failed([row], e)
    return row


def torch_infer_row(args, report, worker, flops):
    b1 = measure([(worker, "b1")], 1, args.infer_repeats)[0]
    b16 = measure([(worker, "b16")], 1, max(1, args.infer_repeats // 2))[0]
    mode = worker.info["mode"]
    row = {"format": f"torch (PyTorch original, {mode})", "threads": worker.info["threads"],
           "torch_mode": mode, "precision": worker.info["precision"], "image_size": args.image_size,
           "latency_b1_ms": 1e3 * b1["median_s"], "throughput_b16_img_s": 16 / b16["median_s"], **worker.report()}
    row["flop_utilisation_b1"] = report_lib.utilisation(flops, 1e3 / row["latency_b1_ms"],
                                                        peak(report, row["precision"]))
    return row


# ------------------------------------------------------------------------------------------------
# Op profile


def profile_section(args, workers, report, precision):
    """One set-up's step (--profile_model; XLA off, `precision`) under the TensorFlow profiler: a trace and
    the top ops."""
    logdir = args.profile_dir or tempfile.mkdtemp(prefix="colorgan-profile-")
    try:
        with workers.case(cases.profile_train, logdir=logdir, steps=args.profile_steps, top=args.profile_top,
                          image_size=args.image_size, batch_size=args.batch_size, jit_compile=False,
                          mixed_precision=precision, seed=args.seed,
                          **cases.model_config(args.profile_model, args.model_overrides)) as worker:
            report["op_profile"] = dict(worker.info["profile"], model=args.profile_model)
    except CaseFailed as e:
        report["op_profile"] = {"error": str(e).splitlines()[0], "logdir": logdir}
        print(f"  failed: {e}", file=sys.stderr)
        return
    top = report["op_profile"]["top_ops"][:3]
    print(f"[profile] {report['op_profile']['step_s']:.2f} s/step; top ops: " + ", ".join(
        f"{o['op']} ({o['type']}) {o['share']:.0%}" for o in top) + f"; trace in {logdir}", flush=True)
