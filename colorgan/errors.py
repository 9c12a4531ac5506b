"""User-facing errors: one clear line that names the problem and the fix, never a traceback."""
import sys


class ColorganError(Exception):
    """A problem the user can fix (bad flag, missing data, unreadable file). Its message is the fix."""


def exit_on_user_error(main):
    """Wrap a script's main so that a ColorganError prints one line and exits with status 2."""
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except ColorganError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    return wrapped
