"""The fuzz gate: random programs through every output path of matcalc, against torch.autograd.

    python benchmarks/fuzz.py --n 20000 [--seed S] [--mode normal|hostile|size] [--workers 2]
                              [--timeout 10] [--paths derive,numpy,...] [--show 20]

prints the counts of programs by their worst path, the counts per path, the shrunk failures
grouped by signature (each with its minimal program and a one-line reproducer), and the most
common refusals. ``--replay SOURCE --path P [--wrt a,b] [--x X] [--sizes n=2,m=3] [--draw D]``
runs one case on one path and prints everything about its outcome; ``--index I --path P``
(with the run's ``--seed`` and ``--mode``) does so for program I of a run. Needs PyTorch.
"""

from __future__ import annotations

import argparse
import sys

from matcalc.cli.common import Progress
from matcalc.proofs import fuzz


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of programs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["normal", "hostile", "size"], default="normal")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per path")
    parser.add_argument("--memory", type=int, default=1024, help="MB per worker (0: no limit)")
    parser.add_argument("--paths", default=None,
                        help=f"comma-separated subset of {', '.join(fuzz.PATHS[1:])}")
    parser.add_argument("--show", type=int, default=20, help="shrunk failures to print")
    parser.add_argument("--shrink-seconds", type=float, default=30.0,
                        help="time to shrink each failure")
    parser.add_argument("--per-signature", type=int, default=2,
                        help="failures shrunk per signature")
    replay = parser.add_argument_group("replaying one case")
    replay.add_argument("--replay", metavar="SOURCE", help="program text (with # draw: notes)")
    replay.add_argument("--path", default="derive")
    replay.add_argument("--wrt", default="")
    replay.add_argument("--x", default="")
    replay.add_argument("--layout", default="numerator")
    replay.add_argument("--sizes", default="", metavar="n=2,m=3")
    replay.add_argument("--draw", type=int, default=0)
    replay.add_argument("--no-execute", action="store_true", help="size mode: derive only")
    replay.add_argument("--index", type=int, default=None,
                        help="replay program INDEX of the run with --seed and --mode on --path")
    return parser.parse_args(argv)


def replay_case(args: argparse.Namespace) -> fuzz.Case:
    sizes = tuple((k, int(v)) for k, _, v in
                  (item.partition("=") for item in args.sizes.split(",") if item))
    wrt = tuple(w for w in args.wrt.split(",") if w)
    return fuzz.Case(args.replay, sizes, args.draw, wrt, args.x, args.layout, (args.path,),
                     not args.no_execute)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.replay is not None:
        print(fuzz.replay(replay_case(args), args.path, args.timeout))
        return 0
    paths = tuple(args.paths.split(",")) if args.paths else None
    settings = fuzz.Settings(args.seed, args.mode, args.timeout, paths, args.shrink_seconds)
    if args.index is not None:
        print(fuzz.replay_index(args.index, settings, args.path))
        return 0

    bar = Progress("fuzzing")

    def progress(done: int) -> None:
        bar.update(done, args.n)

    report = fuzz.fuzz(args.n, settings, args.workers, args.memory, args.per_signature,
                       progress)
    bar.close()
    print(report.text(args.show))
    return 0


if __name__ == "__main__":
    sys.exit(main())
