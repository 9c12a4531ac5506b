"""User-facing errors: one clear line that names the problem and the fix, never a traceback."""
import contextlib
import signal
import sys


class ColorganError(Exception):
    """A problem the user can fix (bad flag, missing data, unreadable file). Its message is the fix."""


class Terminated(BaseException):
    """SIGTERM, raised where the program is, as Ctrl-C raises KeyboardInterrupt: `finally` blocks run
    (temporary files go) and no `except Exception` swallows it."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def one_line_errors():
    """Run a command: a ColorganError prints `error: ...` and exits with status 2; Ctrl-C and SIGTERM
    print one line and exit with 130 and 143 (128 + the signal), as shells report them. Either way
    every `finally` has run, so no temporary or half-written file is left."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals are not ours to catch
        previous = None
    try:
        yield
    except ColorganError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, Terminated) as e:
        by, status = ("Ctrl-C", 130) if isinstance(e, KeyboardInterrupt) else ("SIGTERM", 143)
        # After a progress bar, on a line of its own.
        print(f"{chr(10) if sys.stderr.isatty() else ''}interrupted by {by}; nothing unfinished was kept",
              file=sys.stderr, flush=True)
        raise SystemExit(status) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def exit_on_user_error(main):
    """Wrap a script's main in one_line_errors."""
    def wrapped(*args, **kwargs):
        with one_line_errors():
            return main(*args, **kwargs)
    return wrapped
