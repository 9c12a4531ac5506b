"""Memory a setting would need, checked before the work starts: a batch or size flag that could not fit
in this machine's memory is refused (or clamped, where the result does not depend on it) with the
figure, rather than swapping for minutes and then being killed.

The per-pixel costs are measured, float32 on CPU (peak RSS growth between two batch sizes):
training a step of the smallest U-Net + PatchGAN took 960 bytes per pixel of the batch, the default
pix2pix pair 1,200; scoring a photo in `evaluate` 350-400; colouring a photo at full resolution
about 80 (inference.finish). They are estimates: larger models need more.
"""
import os

from colorgan.errors import ColorganError

TRAIN_BYTES_PER_PIXEL = 1000
EVALUATE_BYTES_PER_PIXEL = 400
COLOUR_BYTES_PER_PIXEL = 80


def total():
    """Bytes of memory this process may use: the machine's, or its container's (cgroup) limit if lower."""
    try:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        limit = 1 << 62
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def size(n):
    """Bytes as a short figure: '850 MB', '6.6 GB', '4,398 GB'."""
    return f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:,.1f} GB" if n < 1e11 else f"{n / 1e9:,.0f} GB"


def refuse_over(need, what, fix):
    """Raise a ColorganError when ``need`` bytes exceed this machine's memory: "WHAT would need about
    N of memory, and this machine has M; FIX"."""
    have = total()
    if need > have:
        raise ColorganError(f"{what} would need about {size(need)} of memory, and this machine has {size(have)}; "
                            f"{fix}")


def most(per_item, fixed=0):
    """How many items of ``per_item`` bytes fit in this machine's memory beside ``fixed`` bytes."""
    return max(0, (total() - fixed) // max(per_item, 1))
