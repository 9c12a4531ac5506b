"""The `colorgan` command: one program, one flag style (absl) for every subcommand.

    colorgan train    --config=quickstart [--flag=value ...]     train (or resume) a colorizer
    colorgan evaluate --data=folder:photos/                     score a model beside the gray baseline
    colorgan export   --format=saved_model|tflite|keras         write a model for serving or phones
    colorgan colorize photos/ --output_dir=colorized            colour photo files at full resolution
    colorgan serve                                              a web page and HTTP API on 127.0.0.1
    colorgan video    film.mp4 --output=film-colour.mp4         colour a film with steady colour

Every subcommand takes --flagfile=FILE, --help (its own flags) and --helpfull (absl's too), and
--verbosity: 0 (the default) prints progress and results only, 1 adds colorgan's INFO lines, 2 also
TensorFlow's start-up and graph-optimiser lines. A subcommand is a module here (or in colorgan.web /
colorgan.video) with ``define_flags(flag_values)`` and ``run(flag_values, args) -> exit status``.
"""
import importlib
import os
import sys

from absl import flags

from colorgan.errors import ColorganError, one_line_errors

COMMANDS = {
    "train": "colorgan.cli.train",
    "evaluate": "colorgan.cli.evaluate",
    "export": "colorgan.cli.export",
    "colorize": "colorgan.cli.colorize",
    "serve": "colorgan.serve",
    "video": "colorgan.cli.video",
}
USAGE = f"usage: colorgan {{{','.join(COMMANDS)}}} [--flags] [args]  (colorgan COMMAND --help for its flags)"


def quiet_tensorflow(verbosity):
    """Import TensorFlow with its C++ start-up lines hidden (oneDNN, CUDA probes, absl's InitializeLog
    notice), unless --verbosity=2 asks for them. They are written to file descriptor 2 before any log
    level applies, so the descriptor itself is pointed at /dev/null while TF starts."""
    if verbosity >= 2:
        return
    # ERROR-level lines after start-up (Grappler's "remapper failed" on every trace) are noise too.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()  # the CUDA probe happens here, while stderr is away
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def define_verbosity(fv):
    flags.DEFINE_integer("verbosity", 0, "0: progress and results; 1: also INFO lines; 2: also TensorFlow's "
                         "start-up and optimiser lines.", flag_values=fv)


def requested_verbosity(argv):
    """--verbosity as the command line asks for it, read before TensorFlow is imported (so that its
    start-up lines can be shown or hidden): given as --verbosity=N or --verbosity N, or in a flagfile.
    Every other flag is left for the real parse, which also reports a malformed value."""
    fv = flags.FlagValues()
    define_verbosity(fv)
    try:
        fv(list(argv), known_only=True)
    except flags.Error:
        return 0
    return fv.verbosity


def only_colorgan_info(record):
    """A log filter: warnings and errors from anywhere, INFO lines only from colorgan itself."""
    return record.levelno > 20 or f"{os.sep}colorgan{os.sep}" in record.pathname


def parse(module, argv):
    """A FlagValues with the subcommand's flags parsed from argv (program name first, the module's
    expand_argv already applied), and the rest."""
    fv = flags.FlagValues()
    module.define_flags(fv)
    define_verbosity(fv)
    try:
        args = fv(argv)[1:]
    except flags.Error as e:
        hint = " (put -- before a file name that starts with a dash)" if "Unknown command line flag" in str(e) else ""
        raise ColorganError(f"{e}{hint}; see {os.path.basename(argv[0])} --help") from None
    return fv, args


def help_text(module, fv, full):
    text = (module.__doc__ or "").strip() + "\n\nflags:\n" + fv.get_help(include_special_flags=False)
    if full:
        text += "\n\nabsl flags:\n" + flags.FLAGS.get_help(include_special_flags=True)
    return text


def run_command(name, argv):
    """Run subcommand ``name`` with argv (its program name first); returns the exit status."""
    # Before the subcommand's module is imported: importing it may import TensorFlow (colorize's photo
    # IO does), whose start-up lines would be printed before run_module could hide them. A --verbosity
    # in a --config recipe is read too late for them; every other form of it is seen here.
    quiet_tensorflow(requested_verbosity(argv))
    return run_module(importlib.import_module(COMMANDS[name]), argv)


def run_module(module, argv):
    """Run a command module (``define_flags`` and ``run``) with argv, its program name first.

    A ColorganError (bad flag, missing data, unreadable model) prints one line and exits with status 2;
    Ctrl-C and SIGTERM print one line and exit with 130 and 143 (errors.one_line_errors).
    """
    with one_line_errors():
        if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
            quiet_tensorflow(0)
            fv = flags.FlagValues()
            module.define_flags(fv)
            print(help_text(module, fv, "--helpfull" in argv[1:]), flush=True)
            return 0
        argv = getattr(module, "expand_argv", lambda a: a)(list(argv))
        quiet_tensorflow(requested_verbosity(argv))
        fv, args = parse(module, argv)
        import logging as python_logging

        from absl import logging
        flags.FLAGS.mark_as_parsed()  # absl's own flags keep their defaults; no "before flag parsing" notice
        logging.use_absl_handler()  # absl's one-line format, as app.run would set up
        logging.set_verbosity(logging.INFO if fv.verbosity >= 1 or getattr(module, "LOGS_INFO", False)
                              else logging.WARNING)
        if fv.verbosity < 1:  # TensorFlow logs each checkpoint and SavedModel write through absl too
            logging.get_absl_handler().addFilter(only_colorgan_info)
        # TensorFlow's Python side logs every SavedModel and checkpoint write at INFO.
        python_logging.getLogger("tensorflow").setLevel(python_logging.INFO if fv.verbosity >= 2
                                                        else python_logging.WARNING)
        return module.run(fv, args) or 0


def main(argv=None):
    """`colorgan COMMAND [--flags] [args]`."""
    argv = list(sys.argv if argv is None else argv)
    command = argv[1] if len(argv) > 1 else ""
    if command not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 0 if command in ("-h", "--help") else 2
    return run_command(command, [f"colorgan {command}"] + argv[2:])


def colorize_main(argv=None):
    """The `colorize` program: `colorgan colorize` under its own short name."""
    return run_command("colorize", list(sys.argv if argv is None else argv))
