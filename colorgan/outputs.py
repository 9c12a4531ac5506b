"""Where a command may write: every output path is checked before any work starts (a model loaded, a
film decoded), so that an output that cannot be written fails in a moment, in one line, rather than
after the work; and nothing a user already has is replaced unless they pass --overwrite.

    outputs.check("--output", "film-colour.mp4", overwrite=fv.overwrite)       # a file
    outputs.check("--out_dir", "runs/eval/x", folder=True, replaces=["metrics.json", "grid.png"])

The check writes nothing: a probe file is made and removed in the nearest folder that exists, which
also tells a read-only disk, or /proc, from a writable one.
"""
import errno
import os
import pathlib
import stat
import tempfile

from colorgan.errors import ColorganError


def cache_dir():
    """Where colorgan keeps what it fetches or measures once per machine (the FID weights, the precision
    probe's answers): $COLORGAN_CACHE_DIR, or .cache in the checkout."""
    return os.environ.get("COLORGAN_CACHE_DIR") or str(pathlib.Path(__file__).resolve().parent.parent / ".cache")


def check(flag, path, folder=False, overwrite=False, replaces=()):
    """Raise a ColorganError naming ``flag`` (e.g. "--output") when ``path`` cannot be written.

    A file output must not be a folder or a device, and an existing one needs ``overwrite``; a folder
    output must not be a file, and the files in it that this command would replace (``replaces``,
    names relative to it) need ``overwrite``. Every folder on the way must be a folder (or not yet
    exist), and the nearest one that exists must take new files. Returns the path.
    """
    path = pathlib.Path(path)
    shown = f"{flag}={path}"
    for ancestor in reversed(path.parents if path.is_absolute() else [*path.parents][:-1]):
        if os.path.lexists(ancestor) and not ancestor.is_dir():
            raise ColorganError(f"{shown}: {ancestor} is {_described(_kind(ancestor))}, not a folder, so "
                                f"nothing can be written below it; pass another {flag}")
    if os.path.lexists(path):
        kind = _kind(path)
        if folder and kind != "folder":
            raise ColorganError(f"{shown} is {_described(kind)}, not a folder; pass another {flag}")
        if not folder and kind == "folder":
            raise ColorganError(f"{shown} is a folder; name a file (a new one, or an existing one with "
                                "--overwrite)")
        if not folder and kind not in ("file", "dangling link"):
            raise ColorganError(f"{shown} is {_described(kind)}; name a regular file")
        if not folder and not overwrite:
            raise ColorganError(f"{shown} already exists; pass --overwrite to replace it, or another {flag}")
    if folder:
        taken = [name for name in replaces if os.path.lexists(path / name)]
        blocked = [path / name for name in taken if (path / name).is_dir()]
        if blocked:
            raise ColorganError(f"{shown}: {blocked[0]} is a folder where this command writes a file; move it "
                                f"away or pass another {flag}")
        if taken and not overwrite:
            listed = ", ".join(str(name) for name in taken[:3]) + (", ..." if len(taken) > 3 else "")
            raise ColorganError(f"{shown} already holds {listed}; pass --overwrite to replace "
                                f"{'them' if len(taken) > 1 else 'it'}, or another {flag}")
    _probe(flag, shown, _nearest_existing(path if folder else path.parent))
    return path


def _kind(path):
    if not os.path.exists(path):
        return "dangling link"
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


def _described(kind):
    return {"file": "a file", "folder": "a folder", "dangling link": "a dangling link", "FIFO": "a FIFO",
            "socket": "a socket", "device": "a device"}[kind]


def _nearest_existing(path):
    path = pathlib.Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def _probe(flag, shown, folder):
    """Make and remove a file in ``folder``: permissions alone do not tell (root ignores them, /proc
    refuses new files whatever its mode says)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".colorgan-probe-"):
            pass
    except OSError as e:
        why = "it takes no new files" if e.errno == errno.ENOENT else e.strerror or str(e)  # /proc, /sys
        raise ColorganError(f"{shown}: cannot write in {folder} ({why}); pass another {flag} "
                            "or make that folder writable") from None
