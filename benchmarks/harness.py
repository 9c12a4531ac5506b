"""How benchmark cases are run and timed; nothing here knows what a case measures (that is cases.py).

- **One process per case.** `Workers.case(function, **kwargs)` starts a process with multiprocessing's
  `spawn`, builds the case there (`function(**kwargs)` returns a `Case`: named callables to time, and
  facts) and hands back a `Worker` to drive it. So a case's peak RSS is its own, TensorFlow and PyTorch
  never share a process or thread pools, and global state (mixed-precision policy, XLA,
  TF_ENABLE_ONEDNN_OPTS) cannot leak from one case to the next. `Workers(reuse=True)` (--smoke) keeps one
  process per framework instead, which saves starting TensorFlow for every case.
- **Median after warm-up, in turns.** `measure` makes the warm-up calls of every job, then the timed
  calls one job after another, call by call, so that a change in machine load hits all jobs alike. Each
  call also records the worker's CPU time (all its threads), a second opinion on a shared machine.
- **FLOPs** of Keras models from their layer shapes (`layer_flops`), and the machine's facts
  (`device_facts`: CPU model, flags, clock, RAM, GPU) for the peak and the report.

Nothing is built or timed in the parent process: it only sends commands and collects the figures.
A maintained harness (pyperf, pytest-benchmark) runs one benchmark at a time; taking turns between
several live processes, each holding a built TensorFlow or PyTorch case, is what this one is for.
"""
import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import time
import traceback

MiB = 2 ** 20
CPU_FLAGS = {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile"}


class Case:
    """What a case function returns: `runs` (name -> callable to time), `info` (facts for the report),
    `memory` (a callable giving the GPU peak in MiB, or None) and `stages` (per-call breakdowns)."""

    def __init__(self, runs, info=None, memory=None):
        self.runs, self.info, self.memory = runs, info or {}, memory
        self.stages = {}  # stage -> [seconds, ...], filled by the runs themselves

    def report(self):
        report = {"peak_rss_mib": peak_rss_mib(), "gpu_peak_mib": self.memory() if self.memory else None}
        # Medians without the first (warm-up, tracing) call.
        report["stages"] = {k: statistics.median(v[1:] or v) for k, v in self.stages.items()}
        return report


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB  # Linux gives KiB


# ------------------------------------------------------------------------------------------------
# Worker processes


def serve(conn):
    """Worker main loop: ('build', (function, kwargs)), ('run', name), ('report', None), ('stop', None)."""
    built = None
    while True:
        command, arg = conn.recv()
        if command == "stop":
            return
        try:
            if command == "build":
                built = None  # free the previous case before building the next
                built = arg[0](**arg[1])
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

    def build(self, function, **kwargs):
        self.case = function.__name__
        self.info = self._call("build", (function, kwargs))
        return self

    def run(self, what):
        """One call of the case's run `what`: (wall seconds, CPU seconds of the worker process)."""
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
    def case(self, function, framework="tf", env=None, **kwargs):
        """A worker with `function(**kwargs)` built in it, for the `with` block; then it is closed."""
        worker = self.kept.get(framework) if self.reuse and not env else None
        reused = worker is not None and worker.process.is_alive() and not worker.busy
        if not reused:
            worker = Worker(env)
            if self.reuse and not env and framework not in self.kept:
                self.kept[framework] = worker
        worker.busy = True
        try:
            yield worker.build(function, **kwargs)
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
# Facts about the machine and the models (called inside workers)


def cpu_facts():
    """Model name, first core's clock (MHz) and the vector flags that decide the peak, from /proc/cpuinfo."""
    facts = {"cpu": platform.processor() or platform.machine(), "cpu_flags": [], "cpu_mhz": None}
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
                    facts["cpu_flags"] = sorted(CPU_FLAGS & set(value.split()))
    except OSError:
        pass
    return facts


def device_facts():
    """CPU model, cores, RAM, and the GPU if TensorFlow sees one (its compute capability decides float16)."""
    import tensorflow as tf
    facts = {"cores": os.cpu_count(), **cpu_facts(), "gpu": None}
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


def matmul_peaks(n=4096, repeats=5):
    """GFLOP/s of one n x n matmul in float32 and in bfloat16 on every core, the best of `repeats` calls:
    what this CPU's (or GPU's) matrix units deliver in practice, against which a step's FLOP/s is judged.
    The estimates from clock x FLOP/cycle run below it where the clock boosts (450-461 measured against
    332 estimated on a Zen 5) and far above it for AMX."""
    import tensorflow as tf
    peaks = {}
    for dtype in (tf.float32, tf.bfloat16):
        a, b = (tf.cast(tf.random.stateless_normal([n, n], seed=[i, 0]), dtype) for i in (1, 2))
        product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
        product(), product()  # trace, then let oneDNN build its kernel
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            float(product())
            best = min(best, time.perf_counter() - start)
        peaks[dtype.name] = 2 * n ** 3 / best / 1e9
    return peaks


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
        if isinstance(inner, (L.Conv2D, L.Conv2DTranspose, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)):
            total += _layer_flops(L, layer, inner)
    return int(total)


def _layer_flops(L, layer, inner):
    out = layer.output.shape[1:]
    if isinstance(inner, L.Dense):  # on any leading shape
        pixels = 1
        for d in out[:-1]:
            pixels *= d
        return 2 * pixels * layer.input.shape[-1] * out[-1]
    (h_in, w_in, c_in), kernel = layer.input.shape[1:], inner.kernel_size[0] * inner.kernel_size[1]
    if isinstance(inner, L.Conv2DTranspose):  # every input pixel scatters a k x k x C_out patch
        return 2 * h_in * w_in * c_in * kernel * out[-1]
    if isinstance(inner, L.DepthwiseConv2D):
        return 2 * out[0] * out[1] * out[2] * kernel
    if isinstance(inner, L.SeparableConv2D):
        return 2 * out[0] * out[1] * c_in * inner.depth_multiplier * (kernel + out[2])
    return 2 * out[0] * out[1] * out[2] * kernel * c_in // inner.groups  # Conv2D
