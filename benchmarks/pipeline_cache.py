"""Training input pipeline throughput, without and with --cache (decoded pixels), at 128 and 256 px.

    python benchmarks/pipeline_cache.py     # reads ../shared/data/train; prints img/s per setting
"""
import os
import time

from colorgan import data

TRAIN = "folder:" + os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "train")

for size in (128, 256):
    for cache in (False, True):
        t0 = time.perf_counter()
        it = iter(data.make_dataset(TRAIN, "train", size, 16, training=True, cache=cache))
        next(it)
        ready = time.perf_counter() - t0
        for _ in range(3): next(it)
        t = time.perf_counter()
        n = 40
        for _ in range(n): next(it)
        dt = time.perf_counter() - t
        print(f"size {size} cache {cache}: {16*n/dt:.1f} img/s (first batch after {ready:.1f} s)", flush=True)
