"""What is measured. Each function here builds one benchmark case inside a worker process (harness.py)
and returns a `harness.Case`: the named calls to time, and facts for the report.

    prepare         device facts, FLOP and parameter counts, the precision --mixed_precision resolves to,
                    and for inference the baseline generator in every saved form plus a full-size photo
    train_keras     colorgan's adversarial step (colorgan.training.Trainer) on one batch in memory
    train_torch     the PyTorch side of a set-up (TORCH_TWINS): its train step in one of torch_reference.MODES
    profile_train   colorgan's baseline step under the TensorFlow profiler: a trace and the top ops
    infer           a colorgan.inference colorizer: batch 1, batch 16, a full-resolution JPEG
    infer_torch     the original generator's forward pass in one of its modes
    pipeline        the training input pipeline of colorgan.data
"""
import glob
import importlib
import json
import os
import shutil
import sys
import tempfile
import time

from harness import Case, MiB, device_facts, layer_flops, matmul_peaks

HERE = os.path.dirname(os.path.abspath(__file__))

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
    # The shipped colorizer's generator (EfficientNet-Lite0 U-Net, its ImageNet weights offline) with each
    # critic of the colour experiments: a 32-filter PatchGAN, and the projected critic on frozen Lite0 features.
    "lite0_patchgan": dict(generator="backbone:efficientnet_lite0", generator_options="encoder_weights=imagenet",
                           critic="patchgan", critic_options="base_filters=32", objective="vanilla"),
    "lite0_projected": dict(generator="backbone:efficientnet_lite0", generator_options="encoder_weights=imagenet",
                            critic="projected", critic_options="", objective="vanilla"),
}
# The PyTorch side of --compare for each set-up that has one: its class (module in benchmarks/, name) and
# the arguments that make it the set-up's networks (TRAIN_MODELS' options; tests/test_torch_lite0.py checks
# them against the Keras models). The seeds' pix2pix takes its filters and depth from the run's settings too
# (sections.torch_twin).
TORCH_TWINS = {
    "baseline": ("torch_reference", "Pix2Pix", {}),
    "lite0_patchgan": ("torch_lite0", "Lite0PatchGAN", dict(encoder_weights="imagenet", critic_filters=32)),
}
TFLITE_VARIANTS = ("float32", "float16", "int8", "dynamic_int8")


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


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (None: cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------------
# Preparation


def prepare(workdir, image_size, train_models, overrides, infer, data, photo_size, tflite_variants, seed,
            mixed_precision="auto", matmul_size=4096):
    """Device facts, FLOP counts and the resolved precision; for the inference section, the generator in
    every format and a photo."""
    from colorgan.training import precision

    # By the hardware: auto's probe would time each set-up, which is what this benchmark is for.
    info = {"device": device_facts(), "flops": model_counts(image_size, train_models, overrides),
            "precision": str(precision.by_hardware(mixed_precision)),
            "matmul_peaks": matmul_peaks(matmul_size) if matmul_size else {}}
    if infer:
        info.update(save_generator_formats(workdir, image_size, overrides, data, tflite_variants, seed))
        info["photo"] = make_photo(os.path.join(workdir, "photo.jpg"), data, photo_size)
    return Case({}, info)


def model_config(name, overrides):
    return dict(TRAIN_MODELS[name], **overrides.get(name, {}))


def model_counts(image_size, train_models, overrides):
    """Forward FLOPs per image and trainable parameters of each set-up's generator and critic."""
    from colorgan import models
    from colorgan.training import parse_options

    counts = {}
    for name in dict.fromkeys(["baseline"] + list(train_models)):
        m = model_config(name, overrides)
        g = models.build_generator(m["generator"], image_size, **parse_options(m["generator_options"]))
        c = models.build_critic(m["critic"], image_size, in_channels=3, **parse_options(m["critic_options"]))
        counts[name] = {"generator": layer_flops(g), "critic": layer_flops(c),
                        "generator_params": sum(int(w.numpy().size) for w in g.trainable_weights),
                        "critic_params": sum(int(w.numpy().size) for w in c.trainable_weights)}
    return counts


def save_generator_formats(workdir, image_size, overrides, data, tflite_variants, seed):
    """The seeds' baseline generator, as initialised, as .keras, SavedModel and each TFLite variant."""
    import keras
    from colorgan import export, models
    from colorgan.training import parse_options

    keras.utils.set_random_seed(seed)
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
    return {"paths": paths, "sizes_mib": {k: dir_size(p) / MiB for k, p in paths.items()}}


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


# ------------------------------------------------------------------------------------------------
# Training


def make_trainer(image_size, batch_size, jit_compile, mixed_precision, seed, **model):
    """A colorgan Trainer and one batch in memory; `mixed_precision` as the train flag takes it."""
    import tensorflow as tf
    from colorgan.training import TrainConfig, Trainer

    logdir = tempfile.mkdtemp(prefix="colorgan-bench-")
    cfg = TrainConfig(image_size=image_size, batch_size=batch_size, jit_compile=jit_compile,
                      mixed_precision=mixed_precision, seed=seed, logdir=logdir, progress=False,
                      critic_steps=1, **model)
    trainer = Trainer(cfg)
    shutil.rmtree(logdir, ignore_errors=True)  # nothing is written after construction
    l, ab = (tf.constant(x) for x in random_batch(batch_size, image_size, seed))
    return trainer, l, ab


def train_keras(image_size, batch_size, jit_compile, mixed_precision, seed, **model):
    """The project's own adversarial step (colorgan.training.Trainer), on one batch held in memory."""
    trainer, l, ab = make_trainer(image_size, batch_size, jit_compile, mixed_precision, seed, **model)
    step = lambda: float(trainer.adversarial_step(l, ab)["generator/loss"])  # float(): wait for it
    return Case({"step": step}, {"onednn": onednn_enabled(), "precision": str(trainer.arithmetic)},
                memory=tf_gpu_peak)


def train_torch(image_size, batch_size, seed, model="baseline", mode="float32", **options):
    """The train step of set-up `model`'s PyTorch twin (TORCH_TWINS) on the same batch, in one of
    torch_reference.MODES; `options` go to its class."""
    import torch
    sys.path.insert(0, HERE)
    from torch_reference import PRECISION, count_parameters

    module, name, _ = TORCH_TWINS[model]
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    twin = getattr(importlib.import_module(module), name)(image_size, device=device, mode=mode, **options)
    l, ab = (twin.prepare(torch.from_numpy(x).permute(0, 3, 1, 2)) for x in random_batch(batch_size, image_size, seed))
    info = {"generator_params": count_parameters(twin.generator), "critic_params": count_parameters(twin.critic),
            "threads": torch.get_num_threads(), "version": torch.__version__, "mode": mode,
            "precision": PRECISION[mode], "compile_note": twin.compile_note}
    return Case({"step": lambda: twin.train_step(l, ab)}, info, memory=torch_gpu_peak)


def profile_train(logdir, steps, top, image_size, batch_size, jit_compile, mixed_precision, seed, **model):
    """`steps` adversarial steps (after one untraced warm-up) under tf.profiler.experimental: the trace
    goes to `logdir` (TensorBoard's Profile tab reads it) and the `top` ops by self time to the report."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

    trainer, l, ab = make_trainer(image_size, batch_size, jit_compile, mixed_precision, seed, **model)
    float(trainer.adversarial_step(l, ab)["generator/loss"])  # trace outside the profile
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(steps):
        float(trainer.adversarial_step(l, ab)["generator/loss"])
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    runs = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*")))
    xplanes = glob.glob(os.path.join(runs[-1], "*.xplane.pb")) if runs else []
    data, ok = profiler_plugin.xspace_to_tools_data(xplanes, "framework_op_stats") if xplanes else (b"", False)
    if not ok:
        raise RuntimeError(f"no op statistics from the trace in {logdir}: {data[:200]!r}")
    return Case({}, {"profile": {"logdir": runs[-1], "steps": steps, "precision": str(trainer.arithmetic),
                                 "step_s": wall / steps, **op_table(json.loads(data), steps, top)}})


def op_table(tables, steps, top):
    """The profiler's framework_op_stats (Google Charts tables) as the top ops and op types per step."""
    columns = [c["id"] for c in tables[0]["cols"]]
    ops = [dict(zip(columns, [c.get("v") if c else None for c in row["c"]])) for row in tables[0]["rows"]]
    ops = [o for o in ops if o["type"] != "IDLE"]
    total = sum(o["total_self_time"] for o in ops) or 1.0
    by_type = {}
    for o in ops:
        by_type[o["type"]] = by_type.get(o["type"], 0.0) + o["total_self_time"]
    per_step = lambda us: round(us / 1e3 / steps, 3)  # microseconds over all steps -> ms per step
    return {
        "self_ms_per_step": per_step(total),
        "top_ops": [{"op": o["operation"].removeprefix("StatefulPartitionedCall/"), "type": o["type"],
                     "calls_per_step": o["occurrences"] / steps, "self_ms_per_step": per_step(o["total_self_time"]),
                     "share": o["total_self_time"] / total}
                    for o in sorted(ops, key=lambda o: -o["total_self_time"])[:top]],
        "top_types": [{"type": t, "self_ms_per_step": per_step(us), "share": us / total}
                      for t, us in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]],
    }


# ------------------------------------------------------------------------------------------------
# Inference and the input pipeline


def infer(kind, path, image_size, photo, threads=None):
    """predict_ab at batch 1 and 16, and full-resolution colouring of a JPEG from decode to encode."""
    from colorgan import inference, photos

    if kind == "tflite":
        colorizer = inference.TFLiteColorizer(path, num_threads=threads)
    else:
        colorizer = inference.load_colorizer(path)
    l1, l16 = random_batch(1, image_size)[0], random_batch(16, image_size)[0]
    with open(photo, "rb") as f:
        jpeg = f.read()
    out = os.path.join(os.path.dirname(photo), f"out-{os.getpid()}.jpg")  # the run's workdir, removed after
    case = Case({"b1": lambda: colorizer.predict_ab(l1), "b16": lambda: colorizer.predict_ab(l16)},
                memory=tf_gpu_peak)

    def fullres():
        t0 = time.perf_counter()
        decoded = photos.decode_photo(jpeg)
        t1 = time.perf_counter()
        rgb = colorizer.colorize(decoded.pixels)
        t2 = time.perf_counter()
        photos.write_photo(out, rgb, decoded.icc_profile)
        t3 = time.perf_counter()
        for stage, seconds in (("decode", t1 - t0), ("colorize", t2 - t1), ("encode", t3 - t2)):
            case.stages.setdefault(stage, []).append(seconds)
    case.runs["fullres"] = fullres

    if kind == "saved_model":  # the serving signature: JPEG bytes in, PNG bytes out, all in the graph
        import tensorflow as tf
        serve = colorizer.loaded.signatures["serving_default"]
        case.runs["serving"] = lambda: serve(images=tf.constant([jpeg]))["images_bytes"].numpy()
    return case


def infer_torch(image_size, ngf, num_downs, mode="float32"):
    """The original generator's forward pass alone, eval mode, no autograd, in one of its modes."""
    import torch
    sys.path.insert(0, HERE)
    from torch_reference import PRECISION, UnetGenerator, autocast, compiled, to_mode

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator, note = compiled(to_mode(UnetGenerator(ngf=ngf, num_downs=num_downs).to(device).eval(), mode),
                               mode, device)
    batches = {n: to_mode(torch.from_numpy(random_batch(n, image_size)[0]).permute(0, 3, 1, 2).to(device), mode)
               for n in (1, 16)}

    def forward(n):
        with torch.no_grad(), autocast(mode, device):
            return generator(batches[n]).float().cpu()  # .cpu() waits for a GPU
    return Case({"b1": lambda: forward(1), "b16": lambda: forward(16)},
                {"threads": torch.get_num_threads(), "mode": mode, "precision": PRECISION[mode],
                 "compile_note": note},
                memory=torch_gpu_peak)


def pipeline(data, image_size, batch_size, batches, cache=False):
    """The training input pipeline (decode, resize, crop, flip, Lab), as colorgan.data builds it; with
    cache, from the decoded pixels of --cache (decoding them all once happens before the timing)."""
    from colorgan import data as data_lib
    iterator = iter(data_lib.make_dataset(data, "train", image_size, batch_size, training=True, cache=cache))
    next(iterator)

    def pull():
        for _ in range(batches):
            next(iterator)  # eager tensors: the batch is complete when it arrives
    return Case({"batches": pull}, memory=tf_gpu_peak)
