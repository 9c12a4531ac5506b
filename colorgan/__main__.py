"""The `colorgan` command: `colorgan serve ...` (web page) and `colorgan colorize ...` (files)."""
import sys

USAGE = "usage: colorgan {serve,colorize} [--flags]  (colorgan COMMAND --help for its flags)"


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    command = argv[1] if len(argv) > 1 else ""
    if command == "serve":
        from colorgan import serve
        return serve.main(argv[2:])
    if command == "colorize":
        from colorgan import cli
        sys.argv = ["colorize"] + argv[2:]
        return cli.colorize_main()
    print(USAGE, file=sys.stderr)
    return 0 if command in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
