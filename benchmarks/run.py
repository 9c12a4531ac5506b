"""Speed and memory of colorgan: training, inference and the input pipeline, beside the PyTorch original.

    python benchmarks/run.py                      # everything, 15-20 minutes on an idle 2-core CPU
    python benchmarks/run.py --compare            # ... and the PyTorch pix2pix (needs the `bench` extra)
    python benchmarks/run.py --only=infer,pipeline
    python benchmarks/run.py --smoke              # tiny models, 2 steps: checks that it all still works

Prints a table, then the results as JSON (also written to --json). Every figure is the median of
several timed calls after warm-up calls. Each benchmark case runs in its own process (multiprocessing,
spawn): its peak RSS is its own, TensorFlow and PyTorch never share a process or thread pools, and
global state (mixed-precision policy, XLA) cannot leak from one case to the next. With --compare, a
colorgan case and its PyTorch counterpart are both kept alive and timed in turns, call by call, so that
a change in machine load hits both alike.
"""
import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # children inherit it: keep TF's start-up chatter out

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 2 ** 20

# The training set-ups: the seeds' baseline, and each other generator with its own critic and objective.
TRAIN_MODELS = {
    "baseline": dict(generator="unet", generator_options="", critic="patchgan", critic_options="",
                     objective="vanilla"),
    # The residual U-Net, with an instance-norm PatchGAN under least squares.
    "resunet": dict(generator="resunet", generator_options="", critic="patchgan",
                    critic_options="norm=instance", objective="lsgan"),
    # A MobileNetV2 encoder (random weights: offline) with a spectrally normalised critic and WGAN-GP
    # (one critic update per generator update, so that the step is comparable with the others).
    "backbone": dict(generator="backbone:mobilenet_v2", generator_options="encoder_weights=none",
                     critic="patchgan", critic_options="norm=layer,spectral_norm=true", objective="wgan-gp"),
}
TFLITE_VARIANTS = ("float32", "float16", "int8", "dynamic_int8")


# ------------------------------------------------------------------------------------------------
# Cases. Each runs inside a worker process and returns a Case: named callables to time, and facts.


class Case:
    def __init__(self, runs, info=None, memory=None):
        self.runs, self.info, self.memory = runs, info or {}, memory
        self.stages = {}  # optional per-call breakdowns: stage -> [seconds, ...]

    def report(self):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux gives KiB
        report = {"peak_rss_mib": rss / MiB, "gpu_peak_mib": self.memory() if self.memory else None}
        # Medians without the first (warm-up, tracing) call.
        report["stages"] = {k: statistics.median(v[1:] or v) for k, v in self.stages.items()}
        return report


def random_batch(batch, size, seed=0):
    """Normalised L and ab in the model's ranges, NHWC float32; the content does not change the speed."""
    import numpy as np
    rng = np.random.default_rng(seed)
    l = rng.uniform(-1, 1, (batch, size, size, 1)).astype(np.float32)
    ab = rng.uniform(-0.5, 0.5, (batch, size, size, 2)).astype(np.float32)
    return l, ab


def tf_gpu_peak():
    import tensorflow as tf
    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / MiB


def torch_gpu_peak():
    import torch
    return torch.cuda.max_memory_allocated() / MiB if torch.cuda.is_available() else None


def device_facts():
    """CPU model, cores, and the GPU if TensorFlow sees one (its compute capability decides float16)."""
    import tensorflow as tf
    facts = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "cpu_flags": [],
             "cpu_mhz": None, "gpu": None}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    facts["cpu"] = value.strip()
                elif key == "cpu MHz" and facts["cpu_mhz"] is None:
                    facts["cpu_mhz"] = float(value)
                elif key == "flags" and not facts["cpu_flags"]:
                    wanted = {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}
                    facts["cpu_flags"] = sorted(wanted & set(value.split()))
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        facts["gpu"] = {"name": details.get("device_name", "GPU"), "count": len(gpus),
                        "compute_capability": details.get("compute_capability")}
    with open("/proc/meminfo") as f:
        facts["ram_gib"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    facts["versions"] = {"python": platform.python_version(), "tensorflow": tf.__version__,
                         "keras": __import__("keras").__version__}
    return facts


def layer_flops(model):
    """FLOPs (2 x multiply-adds) of one image through every conv and dense layer, from the layer shapes.

    Norms, activations, resizes and additions are left out: they are memory-bound and a few percent of
    the total. Nested models (a backbone's encoder) and wrappers (SpectralNormalization) are followed.
    """
    import keras
    L = keras.layers
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += layer_flops(layer)
            continue
        inner = getattr(layer, "layer", layer)
        if not isinstance(inner, (L.Conv2D, L.Conv2DTranspose, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)):
            continue
        (h_in, w_in, c_in), out = layer.input.shape[1:], layer.output.shape[1:]
        kernel = inner.kernel_size[0] * inner.kernel_size[1] if hasattr(inner, "kernel_size") else 1
        if isinstance(inner, L.Conv2DTranspose):  # every input pixel scatters a k x k x C_out patch
            total += 2 * h_in * w_in * c_in * kernel * out[-1]
        elif isinstance(inner, L.DepthwiseConv2D):
            total += 2 * out[0] * out[1] * out[2] * kernel
        elif isinstance(inner, L.SeparableConv2D):
            total += 2 * out[0] * out[1] * c_in * inner.depth_multiplier * (kernel + out[2])
        elif isinstance(inner, L.Conv2D):
            total += 2 * out[0] * out[1] * out[2] * kernel * c_in // inner.groups
        else:  # Dense, on any leading shape
            pixels = 1
            for d in out[:-1]:
                pixels *= d
            total += 2 * pixels * layer.input.shape[-1] * out[-1]
    return int(total)


def case_prepare(workdir, image_size, train_models, overrides, infer, data, photo_size, tflite_variants, seed):
    """Device facts and FLOP counts; for the inference section, the generator in every format and a photo."""
    import keras
    from colorgan import models
    from colorgan.training import parse_options

    info = {"device": device_facts(), "flops": {}}
    for name in dict.fromkeys(["baseline"] + list(train_models)):
        m = dict(TRAIN_MODELS[name], **overrides.get(name, {}))
        g = models.build_generator(m["generator"], image_size, **parse_options(m["generator_options"]))
        c = models.build_critic(m["critic"], image_size, in_channels=3, **parse_options(m["critic_options"]))
        info["flops"][name] = {"generator": layer_flops(g), "critic": layer_flops(c),
                               "generator_params": sum(int(w.numpy().size) for w in g.trainable_weights),
                               "critic_params": sum(int(w.numpy().size) for w in c.trainable_weights)}
    if not infer:
        return Case({}, info)

    from colorgan import export
    keras.utils.set_random_seed(seed)  # the seeds' baseline generator, as initialised
    generator = models.build_generator("unet", image_size, **parse_options(
        overrides.get("baseline", {}).get("generator_options", "")))
    paths = {"keras": os.path.join(workdir, "generator.keras")}
    generator.save(paths["keras"])
    paths["saved_model"] = str(export.export_saved_model(generator, image_size, workdir, name="saved_model"))
    representative = export.l_batches(data, "train", image_size, 8) if "int8" in tflite_variants else None
    for variant in tflite_variants:
        flatbuffer = export.convert_tflite(generator, image_size, variant, representative)
        paths[f"tflite_{variant}"] = str(export.write_tflite(
            flatbuffer, os.path.join(workdir, f"generator_{variant}.tflite"), image_size, variant))
    info["paths"] = paths
    info["sizes_mib"] = {k: dir_size(p) / MiB for k, p in paths.items()}
    info["photo"] = make_photo(os.path.join(workdir, "photo.jpg"), data, photo_size)
    return Case({}, info)


def dir_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)


def make_photo(path, data, size):
    """A JPEG of the given size (W x H) from the first training photo, or a synthetic one without data."""
    import numpy as np
    from PIL import Image
    from colorgan import data as data_lib
    try:
        image = Image.open(data_lib.source_files(data, "train")[0]).convert("RGB")
    except Exception:  # no photos here: a smooth colour field still exercises every stage
        y, x = np.mgrid[0:size[1], 0:size[0]]
        image = Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))
    image.resize(size, Image.BILINEAR).save(path, quality=95)
    return path


def case_train_keras(image_size, batch_size, jit_compile, mixed_precision, seed, **model):
    """The project's own adversarial step (colorgan.training.Trainer), on one batch held in memory."""
    import tensorflow as tf
    from colorgan.training import TrainConfig, Trainer

    logdir = tempfile.mkdtemp(prefix="colorgan-bench-")
    cfg = TrainConfig(image_size=image_size, batch_size=batch_size, jit_compile=jit_compile,
                      mixed_precision=mixed_precision, seed=seed, logdir=logdir, progress=False,
                      critic_steps=1, **model)
    trainer = Trainer(cfg)
    shutil.rmtree(logdir, ignore_errors=True)  # nothing is written after construction
    l, ab = (tf.constant(x) for x in random_batch(batch_size, image_size, seed))
    step = lambda: float(trainer.adversarial_step(l, ab)["generator/loss"])  # float(): wait for it
    return Case({"step": step}, {"onednn": onednn_enabled()}, memory=tf_gpu_peak)


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (None: cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def case_train_torch(image_size, batch_size, ngf, ndf, num_downs, seed):
    """The original's optimize_parameters on the same batch (NCHW)."""
    import torch
    sys.path.insert(0, HERE)
    from torch_reference import Pix2Pix, count_parameters

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Pix2Pix(image_size, ngf=ngf, ndf=ndf, num_downs=num_downs, device=device)
    l, ab = (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
             for x in random_batch(batch_size, image_size, seed))
    info = {"generator_params": count_parameters(model.generator), "critic_params": count_parameters(model.critic),
            "threads": torch.get_num_threads(), "version": torch.__version__}
    return Case({"step": lambda: model.train_step(l, ab)}, info, memory=torch_gpu_peak)


def case_infer(kind, path, image_size, photo, threads=None):
    """predict_ab at batch 1 and 16, and full-resolution colouring of a JPEG from decode to encode."""
    from colorgan import inference

    if kind == "tflite":
        colorizer = inference.TFLiteColorizer(path, num_threads=threads)
    else:
        colorizer = inference.load_colorizer(path)
    l1, l16 = random_batch(1, image_size)[0], random_batch(16, image_size)[0]
    with open(photo, "rb") as f:
        jpeg = f.read()
    out = os.path.join(tempfile.mkdtemp(prefix="colorgan-bench-"), "out.jpg")
    case = Case({"b1": lambda: colorizer.predict_ab(l1), "b16": lambda: colorizer.predict_ab(l16)},
                memory=tf_gpu_peak)

    def fullres():
        t0 = time.perf_counter()
        photo = inference.decode_photo(jpeg)
        t1 = time.perf_counter()
        rgb = colorizer.colorize(photo.pixels)
        t2 = time.perf_counter()
        inference.write_photo(out, rgb, photo.icc_profile)
        t3 = time.perf_counter()
        for stage, seconds in (("decode", t1 - t0), ("colorize", t2 - t1), ("encode", t3 - t2)):
            case.stages.setdefault(stage, []).append(seconds)
    case.runs["fullres"] = fullres

    if kind == "saved_model":  # the serving signature: JPEG bytes in, PNG bytes out, all in the graph
        import tensorflow as tf
        serve = colorizer.loaded.signatures["serving_default"]
        case.runs["serving"] = lambda: serve(images=tf.constant([jpeg]))["images"].numpy()
    return case


def case_infer_torch(image_size, ngf, num_downs):
    """The original generator's forward pass alone, eval mode, no autograd."""
    import torch
    sys.path.insert(0, HERE)
    from torch_reference import UnetGenerator

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = UnetGenerator(ngf=ngf, num_downs=num_downs).to(device).eval()
    batches = {n: torch.from_numpy(random_batch(n, image_size)[0]).permute(0, 3, 1, 2).contiguous().to(device)
               for n in (1, 16)}

    def forward(n):
        with torch.no_grad():
            return generator(batches[n]).cpu()  # .cpu() waits for a GPU
    return Case({"b1": lambda: forward(1), "b16": lambda: forward(16)},
                {"threads": torch.get_num_threads()}, memory=torch_gpu_peak)


def case_pipeline(data, image_size, batch_size, batches):
    """The training input pipeline (decode, resize, crop, flip, Lab), as colorgan.data builds it."""
    from colorgan import data as data_lib
    iterator = iter(data_lib.make_dataset(data, "train", image_size, batch_size, training=True))

    def pull():
        for _ in range(batches):
            next(iterator)  # eager tensors: the batch is complete when it arrives
    return Case({"batches": pull}, memory=tf_gpu_peak)


CASES = {f.__name__[5:]: f for f in (case_prepare, case_train_keras, case_train_torch, case_infer,
                                      case_infer_torch, case_pipeline)}


# ------------------------------------------------------------------------------------------------
# Worker processes and timing


def serve(conn):
    """Worker main loop: ('build', (case, kwargs)), ('run', name), ('report', None), ('stop', None)."""
    built = None
    while True:
        command, arg = conn.recv()
        if command == "stop":
            return
        try:
            if command == "build":
                built = None  # free the previous case before building the next
                built = CASES[arg[0]](**arg[1])
                reply = built.info
            elif command == "run":
                start, cpu = time.perf_counter(), time.process_time()
                built.runs[arg]()
                reply = (time.perf_counter() - start, time.process_time() - cpu)
            else:
                reply = built.report()
            conn.send(("ok", reply))
        except Exception:
            conn.send(("error", traceback.format_exc(limit=6)))


class CaseFailed(Exception):
    pass


class Worker:
    """A spawned process that hosts one benchmark case at a time."""

    def __init__(self, env=None):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), daemon=True)
        saved = dict(os.environ)
        os.environ.update(env or {})  # the child starts with this environment (read when TF is imported)
        try:
            self.process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        child.close()
        self.case, self.info, self.busy = None, None, False

    def _call(self, command, arg=None):
        self.conn.send((command, arg))
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.process.join(5)
            raise CaseFailed(f"{self.case}: worker died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise CaseFailed(f"{self.case}: {value.strip().splitlines()[-1]}\n{value}")
        return value

    def build(self, case, **kwargs):
        self.case = case
        self.info = self._call("build", (case, kwargs))
        return self

    def run(self, what):
        return self._call("run", what)

    def report(self):
        return self._call("report")

    def close(self):
        if self.process.is_alive():
            try:
                self.conn.send(("stop", None))
            except (BrokenPipeError, OSError):
                pass
            self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


class Workers:
    """Where cases run: each in a fresh process (the default), or with `reuse` (--smoke) in one kept process
    per framework, which saves starting TensorFlow for every case but lets the cases share a memory peak."""

    def __init__(self, reuse=False):
        self.reuse, self.kept = reuse, {}

    @contextlib.contextmanager
    def case(self, case, framework="tf", env=None, **kwargs):
        worker = self.kept.get(framework) if self.reuse and not env else None
        reused = worker is not None and worker.process.is_alive() and not worker.busy
        if not reused:
            worker = Worker(env)
            if self.reuse and not env and framework not in self.kept:
                self.kept[framework] = worker
        worker.busy = True
        try:
            yield worker.build(case, **kwargs)
        finally:
            worker.busy = False
            if worker is not self.kept.get(framework):
                worker.close()

    def close(self):
        for worker in self.kept.values():
            worker.close()


def measure(jobs, warmup, repeats):
    """Each (worker, run name) job: `warmup` untimed calls each, then `repeats` timed calls in turns.

    Returns per job the median wall seconds, every timed call, the first call (tracing, XLA compilation)
    and the median CPU seconds of the worker process (all its threads): on a shared machine the CPU time
    is a second opinion that other people's load does not inflate as much.
    """
    first = []
    for worker, what in jobs:
        first.append(worker.run(what)[0] if warmup else None)
        for _ in range(warmup - 1):
            worker.run(what)
    times = [[] for _ in jobs]
    for _ in range(repeats):
        for i, (worker, what) in enumerate(jobs):
            times[i].append(worker.run(what))
    return [{"median_s": statistics.median(w for w, _ in t), "times_s": [round(w, 4) for w, _ in t],
             "cpu_s": statistics.median(c for _, c in t), "first_call_s": f} for t, f in zip(times, first)]


# ------------------------------------------------------------------------------------------------
# Sections


def train_section(args, workers, report, flops, mixed):
    """Adversarial steps per second of each model, XLA off and on (and mixed precision where supported).

    The variants of one model (and, with --compare, the PyTorch original beside the baseline) are alive
    together and timed in turns, so that they see the same machine load.
    """
    size, batch = args.image_size, args.batch_size
    for name in args.train_models:
        model = dict(TRAIN_MODELS[name], **args.model_overrides.get(name, {}))
        variants = [(xla, precision, False) for xla in args.xla for precision in [""] + ([mixed] if mixed else [])]
        if args.onednn and name == "baseline":
            # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512/AMX units; this
            # row shows what they do here (TF_ENABLE_ONEDNN_OPTS=1, read when TensorFlow is imported).
            variants.append((False, "", True))
        warmup, steps = (args.warmup, args.steps) if name == "baseline" else (args.model_warmup, args.model_steps)
        f = flops.get(name)
        # Model FLOPs of one step per image, as the original counts its work: generator forward and
        # backward (3 G), the critic on real and fake for its update (2 x 3 D), on fake for the generator's (3 D).
        step_flops = 3 * f["generator"] + 9 * f["critic"] if f else None
        rows = [{"model": name, "framework": "keras", "generator": model["generator"], "critic": model["critic"],
                 "critic_options": model["critic_options"], "objective": model["objective"], "xla": xla,
                 "precision": precision or "float32",
                 "batch_size": batch, "image_size": size, "train_flops_per_image": step_flops}
                for xla, precision, onednn in variants]
        compare = args.compare and name == "baseline"
        if compare:
            rows.append(dict(rows[0], model="baseline (PyTorch original)", framework="torch", xla=False,
                             precision="float32", onednn="torch default"))
        try:
            with contextlib.ExitStack() as stack:
                running = [stack.enter_context(workers.case(
                    "train_keras", env={"TF_ENABLE_ONEDNN_OPTS": "1"} if onednn else None, image_size=size,
                    batch_size=batch, jit_compile=xla, mixed_precision=precision, seed=args.seed, **model))
                    for xla, precision, onednn in variants]
                if compare:
                    running.append(stack.enter_context(workers.case(
                        "train_torch", "torch", image_size=size, batch_size=batch, ngf=args.torch_filters,
                        ndf=args.torch_filters, num_downs=args.unet_depth, seed=args.seed)))
                    rows[-1]["torch_info"] = running[-1].info
                timings = measure([(w, "step") for w in running], warmup, steps)
                for row, worker, timing in zip(rows, running, timings):
                    row.update(timing, **worker.report())
                    if "onednn" in worker.info:
                        row["onednn"] = {True: "on", False: "off"}.get(worker.info["onednn"], "?")
        except CaseFailed as e:
            for row in rows:
                row["error"] = str(e).splitlines()[0]
            print(f"  failed: {e}", file=sys.stderr)
        for row in rows:
            if "median_s" in row:
                row["images_per_second"] = batch / row["median_s"]
                row["flop_utilisation"] = utilisation(step_flops, row["images_per_second"], args.peak_gflops)
            report["train"].append(row)
            print_row("train", row)
        if compare and "images_per_second" in rows[0]:
            report["comparisons"]["train_keras_over_torch"] = \
                rows[0]["images_per_second"] / rows[-1]["images_per_second"]
    if not mixed:
        report["skipped"].append("mixed precision training: this device has no fast float16/bfloat16 "
                                 "arithmetic (no GPU; no AVX512-BF16/AMX on the CPU)")


def pipeline_section(args, workers, report):
    with workers.case("pipeline", data=args.data, image_size=args.image_size, batch_size=args.batch_size,
                batches=args.pipeline_batches) as worker:
        (t,) = measure([(worker, "batches")], 1, args.pipeline_runs)
        images = args.batch_size * args.pipeline_batches
        report["pipeline"] = dict(t, **worker.report(), data=args.data, batch_size=args.batch_size,
                                  images_per_run=images, images_per_second=images / t["median_s"],
                                  cores=os.cpu_count())
    print_row("pipeline", report["pipeline"])


def infer_section(args, workers, report, prepared):
    paths, photo = prepared["paths"], prepared["photo"]
    size, rows, flops = args.image_size, report["infer"], prepared["flops"]["baseline"]["generator"]
    formats = []
    for kind in args.infer_formats:
        if kind == "tflite":
            formats += [("tflite", v, t) for v in args.tflite_variants for t in args.tflite_threads]
        else:
            formats.append((kind, None, None))
    with contextlib.ExitStack() as stack:
        torch_worker = stack.enter_context(workers.case(
            "infer_torch", "torch", image_size=size, ngf=args.torch_filters, num_downs=args.unet_depth)) \
            if args.compare else None
        for kind, variant, threads in formats:
            name = kind if variant is None else f"tflite {variant}"
            row = {"format": name, "threads": threads, "image_size": size,
                   "size_mib": prepared["sizes_mib"].get(kind if variant is None else f"tflite_{variant}")}
            repeats = args.infer_repeats
            try:
                with workers.case("infer", kind=kind, path=paths[kind if variant is None else f"tflite_{variant}"],
                                  image_size=size, photo=photo, threads=threads) as worker:
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
                row["error"] = str(e).splitlines()[0]
                print(f"  failed: {e}", file=sys.stderr)
            # Against the fp32 peak of the cores in use; int8 models do integer arithmetic, which that
            # peak does not bound, so they get no figure.
            fp32 = variant is None or "int8" not in variant
            row["flop_utilisation_b1"] = utilisation(flops, 1e3 / row["latency_b1_ms"], args.peak_gflops,
                                                     threads) if "latency_b1_ms" in row and fp32 else None
            rows.append(row)
            print_row("infer", row)
        if torch_worker is not None:
            b1, b16 = measure([(torch_worker, "b1")], 1, args.infer_repeats), \
                measure([(torch_worker, "b16")], 1, max(1, args.infer_repeats // 2))
            row = {"format": "torch (PyTorch original, eager)", "threads": torch_worker.info["threads"],
                   "image_size": size, "latency_b1_ms": 1e3 * b1[0]["median_s"],
                   "throughput_b16_img_s": 16 / b16[0]["median_s"], **torch_worker.report()}
            row["flop_utilisation_b1"] = utilisation(flops, 1e3 / row["latency_b1_ms"], args.peak_gflops)
            rows.append(row)
            print_row("infer", row)


def utilisation(flops_per_image, images_per_second, peak_gflops, cores=None):
    """Achieved FLOP/s over the peak of the cores in use (all of them unless `cores` says fewer)."""
    if not flops_per_image or not peak_gflops or not images_per_second:
        return None
    peak = peak_gflops * (min(cores, os.cpu_count()) / os.cpu_count() if cores else 1.0)
    return flops_per_image * images_per_second / (peak * 1e9)


def estimate_peak_gflops(device):
    """fp32 peak of the CPU: cores x clock x FLOPs per cycle (two 256-bit FMA units with AVX2+FMA)."""
    if device.get("gpu") or not device.get("cpu_mhz"):
        return None  # a GPU's peak is not guessed: pass --peak_gflops
    flags = set(device["cpu_flags"])
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    return device["cores"] * device["cpu_mhz"] / 1e3 * per_cycle


def mixed_precision_for(device, choice):
    """float16 on GPUs with tensor cores (compute capability 7+), bfloat16 on CPUs with bf16 units."""
    if choice != "auto":
        return "" if choice == "off" else choice
    gpu = device.get("gpu")
    if gpu:
        return "float16" if (gpu.get("compute_capability") or (0,))[0] >= 7 else ""
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & set(device["cpu_flags"]) else ""


def check_targets(report):
    """The issue's three targets, each with its measured value."""
    targets, comp = {}, report["comparisons"]
    if "train_keras_over_torch" in comp:
        v = comp["train_keras_over_torch"]
        targets["train_step_vs_torch"] = {"value": v, "target": ">= 1.3", "met": v >= 1.3}
    base = [r for r in report["train"] if r.get("model") == "baseline" and r.get("framework") == "keras"
            and not r.get("xla") and r.get("precision") == "float32" and "images_per_second" in r]
    if report.get("pipeline") and base:
        v = report["pipeline"]["images_per_second"] / base[0]["images_per_second"]
        targets["pipeline_vs_train_step"] = {"value": v, "target": ">= 20", "met": v >= 20}
    if "fullres_tflite_fp16_1t_ms" in comp:
        full, fwd = comp["fullres_tflite_fp16_1t_ms"], comp["torch_forward_b1_alternating_ms"]
        targets["fullres_tflite_fp16_1t_vs_torch_forward"] = {
            "value": fwd / full, "fullres_ms": full, "torch_forward_ms": fwd,
            "target": "full-res time < torch forward (value > 1)", "met": full < fwd}
    report["targets"] = targets


# ------------------------------------------------------------------------------------------------
# Output


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def print_row(section, r):
    """One readable line per result, as soon as it is measured."""
    if "error" in r:
        print(f"[{section}] {r.get('model') or r.get('format')}: FAILED {r['error']}", flush=True)
        return
    memory = f"RSS {fmt(r.get('peak_rss_mib'), '.0f')} MiB" + (
        f", GPU {r['gpu_peak_mib']:.0f} MiB" if r.get("gpu_peak_mib") else "")
    if section == "train":
        name = f"{r['framework']} {r['model']}" + (" +XLA" if r["xla"] else "") + (
            f" {r['precision']}" if r["precision"] != "float32" else "") + (" +oneDNN" if r.get("onednn") == "on" else "")
        print(f"[train] {name:40s} {r['images_per_second']:7.2f} img/s  step {r['median_s']:6.2f} s "
              f"(CPU {r['cpu_s']:6.2f} s, first {r['first_call_s']:6.1f} s)  {memory}"
              f"  util {fmt(r['flop_utilisation'], '.1%')}", flush=True)
    elif section == "pipeline":
        print(f"[pipeline] {r['images_per_second']:.1f} img/s on {r['cores']} cores  {memory}", flush=True)
    else:
        threads = f" {r['threads']}t" if r.get("threads") else ""
        print(f"[infer] {r['format'] + threads:34s} b1 {fmt(r.get('latency_b1_ms'), '8.1f')} ms  "
              f"b16 {fmt(r.get('throughput_b16_img_s'), '6.2f')} img/s  full-res {fmt(r.get('fullres_ms'), '8.1f')} ms"
              f"  {memory}", flush=True)


def table(report):
    """The whole report as Markdown tables (BENCHMARKS.md takes them as they are)."""
    lines = []
    if report["train"]:
        lines += ["| train step | framework | XLA | precision | oneDNN | img/s | step s | CPU s/step | first step s "
                  "| peak RSS MiB | GPU MiB | util |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["train"]:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['framework']} | {'on' if r['xla'] else 'off'} | {r['precision']} "
                             f"| {r.get('onednn', '?')} | failed: {r['error'][:60]} | | | | | | |")
            else:
                lines.append(f"| {r['model']} | {r['framework']} | {'on' if r['xla'] else 'off'} | {r['precision']} "
                             f"| {r['onednn']} | {r['images_per_second']:.2f} | {r['median_s']:.2f} | {r['cpu_s']:.2f} "
                             f"| {fmt(r['first_call_s'], '.1f')} | {r['peak_rss_mib']:.0f} "
                             f"| {fmt(r['gpu_peak_mib'], '.0f')} | {fmt(r['flop_utilisation'], '.1%')} |")
        lines.append("")
    if report["infer"]:
        lines += ["| inference | threads | b1 latency ms | b16 img/s | full-res ms | of which Lab/resize ms "
                  "| peak RSS MiB | size MiB | util b1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["infer"]:
            lines.append(f"| {r['format']} | {r.get('threads') or 'all'} | {fmt(r.get('latency_b1_ms'), '.1f')} "
                         f"| {fmt(r.get('throughput_b16_img_s'))} | {fmt(r.get('fullres_ms'), '.1f')} "
                         f"| {fmt(r.get('fullres_pre_post_ms'), '.0f')} "
                         f"| {fmt(r.get('peak_rss_mib'), '.0f')} | {fmt(r.get('size_mib'), '.1f')} "
                         f"| {fmt(r.get('flop_utilisation_b1'), '.1%')} |" + (f" failed: {r['error'][:60]}"
                                                                               if "error" in r else ""))
        lines.append("")
    if report.get("pipeline"):
        p = report["pipeline"]
        lines += [f"Input pipeline: {p['images_per_second']:.1f} img/s ({p['batch_size']}-image batches, "
                  f"{p['cores']} cores, peak RSS {p['peak_rss_mib']:.0f} MiB)", ""]
    if report["flops"]:
        lines += ["| FLOPs per image | generator fwd GFLOP | critic fwd GFLOP | train step GFLOP (3G+9D) |",
                  "|---|---:|---:|---:|"]
        for name, f in report["flops"].items():
            if "critic" in f:
                lines.append(f"| {name} | {f['generator'] / 1e9:.2f} | {f['critic'] / 1e9:.2f} "
                             f"| {(3 * f['generator'] + 9 * f['critic']) / 1e9:.2f} |")
        lines.append("")
    for name, t in report.get("targets", {}).items():
        lines.append(f"Target {name}: {t['value']:.2f} ({t['target']}) -> {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    csv = lambda s: [x for x in s.split(",") if x]
    p.add_argument("--only", type=csv, default=["train", "pipeline", "infer"], help="sections: train,pipeline,infer")
    p.add_argument("--compare", action="store_true", help="time the PyTorch original alongside (needs torch)")
    p.add_argument("--smoke", action="store_true", help="tiny models at 32 px, 2 steps: a functional check")
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--train_models", type=csv, default=list(TRAIN_MODELS), help=",".join(TRAIN_MODELS))
    p.add_argument("--xla", type=csv, default=["off", "on"], help="off,on: train without and/or with XLA")
    p.add_argument("--mixed_precision", default="auto", help="auto | off | float16 | bfloat16")
    p.add_argument("--onednn", type=int, default=1, help="1: add a baseline row with TF_ENABLE_ONEDNN_OPTS=1")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of the baseline (the first traces)")
    p.add_argument("--steps", type=int, default=5, help="timed steps of the baseline")
    p.add_argument("--model_warmup", type=int, default=1, help="untimed steps of the other models")
    p.add_argument("--model_steps", type=int, default=2, help="timed steps of the other models")
    p.add_argument("--infer_formats", type=csv, default=["keras", "saved_model", "tflite"])
    p.add_argument("--tflite_variants", type=csv, default=list(TFLITE_VARIANTS))
    p.add_argument("--tflite_threads", type=csv, default=["1", "2"])
    p.add_argument("--infer_repeats", type=int, default=3, help="timed calls per inference figure")
    p.add_argument("--photo_size", default="1024x768", help="W x H of the full-resolution JPEG")
    p.add_argument("--data", default="folder:" + os.path.normpath(os.path.join(REPO, "..", "shared", "data", "train")))
    p.add_argument("--pipeline_batches", type=int, default=8, help="batches per timed pipeline call")
    p.add_argument("--pipeline_runs", type=int, default=5)
    p.add_argument("--peak_gflops", type=float, default=None, help="device fp32 peak; default: estimated for CPUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the JSON report to this file")
    args = p.parse_args(argv)
    args.xla = [x == "on" for x in args.xla]
    args.tflite_threads = [int(t) for t in args.tflite_threads]
    args.photo_size = tuple(int(v) for v in args.photo_size.lower().split("x"))
    args.unet_depth, args.torch_filters, args.model_overrides = 8, 64, {}
    if args.smoke:
        # Tiny versions of each set-up, at 32 px, two timed steps: seconds, not minutes.
        args.image_size, args.batch_size, args.unet_depth = 32, 2, 5
        args.warmup = args.model_warmup = 1
        args.steps = args.model_steps = args.infer_repeats = args.pipeline_runs = 2
        args.pipeline_batches, args.photo_size = 2, (128, 96)
        args.train_models, args.xla, args.mixed_precision, args.onednn = ["baseline"], [False], "off", 0
        args.tflite_variants, args.tflite_threads = ["float16"], [1]
        args.torch_filters = 8
        args.model_overrides = {"baseline": dict(generator_options="base_filters=8,depth=5",
                                                 critic_options="base_filters=8")}
    if args.data.startswith("folder:") and not os.path.isdir(args.data[len("folder:"):]):
        print(f"{args.data} not found: the pipeline reads the packaged sample photos instead", file=sys.stderr)
        args.data = "samples"
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    report = {"command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average_before": os.getloadavg(),
              "settings": vars(args),
              "train": [], "infer": [], "pipeline": None, "flops": {}, "comparisons": {}, "skipped": []}
    if args.compare:
        import importlib.util
        if importlib.util.find_spec("torch") is None:
            sys.exit("--compare needs torch: pip install -e '.[bench]' (CPU build: "
                     "--index-url https://download.pytorch.org/whl/cpu)")
    workdir = tempfile.mkdtemp(prefix="colorgan-bench-")
    workers = Workers(reuse=args.smoke)
    try:
        with workers.case("prepare", workdir=workdir, image_size=args.image_size,
                          train_models=args.train_models if "train" in args.only else [],
                          overrides=args.model_overrides, infer="infer" in args.only, data=args.data,
                          photo_size=args.photo_size, tflite_variants=args.tflite_variants,
                          seed=args.seed) as prep:
            prepared = prep.info
        report["device"] = prepared["device"]
        report["flops"] = prepared["flops"]
        args.peak_gflops = args.peak_gflops or estimate_peak_gflops(prepared["device"])
        report["peak_gflops"] = args.peak_gflops
        mixed = mixed_precision_for(prepared["device"], args.mixed_precision)
        if not prepared["device"]["gpu"]:
            report["skipped"].append("GPU: none on this machine (GPU memory is reported where there is one)")
        if "train" in args.only:
            train_section(args, workers, report, prepared["flops"], mixed)
        if "pipeline" in args.only:
            pipeline_section(args, workers, report)
        if "infer" in args.only:
            infer_section(args, workers, report, prepared)
    finally:
        workers.close()
        shutil.rmtree(workdir, ignore_errors=True)
    check_targets(report)
    report["load_average_after"] = os.getloadavg()
    report["wall_seconds"] = time.time() - started
    print("\n" + table(report) + "\n")
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
