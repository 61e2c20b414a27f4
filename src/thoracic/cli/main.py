"""``thoracic`` command line: ``main(argv) -> int`` so tests call it in-process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from thoracic._process import keep_freed_memory
from thoracic._version import __version__
from thoracic.cli._args import COUNT, OUT_DIR, POSITIVE, Parser, one_line
from thoracic.cli._progress import finish, run_batch
from thoracic.errors import ThoracicError

log = logging.getLogger("thoracic")


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-non-chest",
        action="store_true",
        help="read non-radiograph modalities, lateral views and other body parts (flagged in outputs)",
    )
    p.add_argument("--check", action="store_true",
                   help="also check the pixels: refuse photos, documents, screenshots, CT slices, lateral views and "
                        "colour images (flagged instead with --allow-non-chest)")
    p.add_argument("--max-pixels", type=POSITIVE, default=None, help="refuse images with more pixels (default 64e6)")


def _read_options(args: argparse.Namespace):
    from thoracic.io import DEFAULT_MAX_PIXELS, ReadConfig

    return ReadConfig(
        allow_non_chest=args.allow_non_chest,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        check_content=args.check,
    )


def _cmd_convert(args: argparse.Namespace) -> int:
    from thoracic.batch.convert import ConvertConfig, convert, convert_chain
    from thoracic.io.radiograph import ReadConfig
    from thoracic.preprocess import get_chain

    if args.chain and (args.size or args.clahe or args.normalize != "window"):
        raise ThoracicError("--chain sets the whole preprocessing; do not combine it with --size/--normalize/--clahe")
    chain = get_chain(args.chain) if args.chain else convert_chain(args.size, args.normalize, args.clahe)
    ReadConfig(normalize=chain.normalize)  # validate before any work
    options = ConvertConfig(chain=chain, read=_read_options(args), workers=args.workers)
    summary = run_batch("convert", args, convert, args.inputs, args.out, options, done="converted")
    line = (f"{summary.converted} converted ({summary.flagged} flagged), {summary.skipped} already done, "
            f"{summary.failed} failed; manifest: {summary.manifest}")
    return finish(summary, line, "the manifest's error column")


def _cmd_demo(args: argparse.Namespace) -> int:
    from thoracic.demo import run_demo

    index = run_demo(args.out)
    print(f"demo written: {index}")
    return 0


def _cmd_chains(args: argparse.Namespace) -> int:
    from thoracic.preprocess import CHAINS

    for name in sorted(CHAINS):
        chain = CHAINS[name]
        print(f"{name}\n  normalize={chain.normalize} steps={chain.spec() or '(none)'}\n  {chain.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="thoracic",
        description="Localize and classify thoracic abnormalities on chest radiographs.",
    )
    parser.add_argument("--version", action="version", version=f"thoracic {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("convert", help="convert radiographs (DICOM, PNG, JPEG) to 8-bit PNGs with a manifest")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders (searched recursively)")
    p.add_argument("--out", required=True, type=OUT_DIR, help="output folder (re-running resumes)")
    p.add_argument("--size", type=POSITIVE, default=None, help="resize the longest side to N pixels (aspect kept)")
    p.add_argument("--normalize", choices=["window", "minmax", "percentile"], default="window",
                   help="window: the file's VOI/window (default); minmax: the Kaggle recipe; percentile: 0.5-99.5%%")
    p.add_argument("--clahe", action="store_true", help="contrast-limited adaptive histogram equalization")
    p.add_argument("--chain", default=None, help="a named preprocessing chain or a spec (see `thoracic chains`)")
    p.add_argument("--workers", type=COUNT, default=0, help="worker processes (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_read_options(p)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("demo", help="run thoracic on the bundled sample radiographs and write an HTML page")
    p.add_argument("--out", default="demo-output", type=OUT_DIR, help="output folder (default: demo-output)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("chains", help="list the named preprocessing chains")
    p.set_defaults(func=_cmd_chains)

    # subcommands of the other stages register themselves (their heavy imports stay lazy)
    from thoracic.cli import (
        dataset,
        deidentify,
        dicom_node,
        evaluate,
        models,
        predict,
        segment,
        serve,
        shift,
        train,
        train_cv,
        weights,
    )
    from thoracic.cli import train_detector as td

    predict.add_arguments(sub.add_parser("predict", help=predict.HELP))
    for module in (dataset, evaluate, shift, segment, models, serve, dicom_node, deidentify, weights):
        module.add_parser(sub)
    targets = train.add_parser(sub)  # the `train` command's models, beside `lungs`:
    td.add_arguments(targets.add_parser("detector", help=td.DETECTOR_HELP))
    td.add_classifier_arguments(targets.add_parser("classifier", help=td.CLASSIFIER_HELP))
    train_cv.add_arguments(targets.add_parser("cv", help=train_cv.HELP))
    td.add_export_arguments(sub.add_parser("export-detector", help=td.EXPORT_HELP))
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help as one: ``thoracic X --help``
    then opens with a sentence ("Detect findings on radiographs ... to a CSV.")."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            text = helps.get(name)
            if sub.description is None and text:
                sub.description = f"{text[0].upper()}{text[1:]}."
            _describe(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # a usage error (one line, exit 2), --help or --version
        return stop.code if isinstance(stop.code, int) else 2
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # large image arrays reuse freed memory instead of new pages (thoracic._process)
    try:
        return int(args.func(args))
    except ThoracicError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left: run() ends quietly
        raise
    except OSError as err:  # a path the argument checks could not foresee (a full disk, a lost mount)
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"error: {err.strerror or one_line(err)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


#: The exit status of a command whose reader closed its output early (``thoracic ... | head -1``):
#: 128 + SIGPIPE, as a shell reports a program a broken pipe ended.
BROKEN_PIPE_STATUS = 141


def run() -> None:
    """Console-script entry point.

    A reader that closes the output early (``thoracic chains | head -1``) ends the command quietly
    with :data:`BROKEN_PIPE_STATUS`: what it had written stays written, and no traceback is printed.
    """
    try:
        status = main()
        sys.stdout.flush()  # a broken pipe shows here when the output fit in the buffer
    except BrokenPipeError:
        # the standard way (Python's signal docs): point stdout at devnull so that the flush at
        # interpreter exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(BROKEN_PIPE_STATUS)
    sys.exit(status)


if __name__ == "__main__":  # python -m thoracic.cli.main (services and tests start subprocesses this way)
    run()
