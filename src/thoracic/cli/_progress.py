"""The progress bar and closing lines of the batch commands (convert, segment, dataset export, deidentify)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")


class BatchProgress:
    """A tqdm bar fed by a batch function's ``on_start(todo, skipped)`` and ``progress(result)``.

    Failures are printed above the bar as they happen; use it as a context manager so the bar
    closes whatever happens.
    """

    def __init__(self, desc: str, out: str, *, quiet: bool = False, done: str = "processed") -> None:
        from tqdm import tqdm

        self.out, self.done = out, done
        self.bar = tqdm(total=0, unit="img", desc=desc, disable=quiet or None, dynamic_ncols=True)

    def start(self, todo: int, skipped: int) -> None:
        self.bar.total = todo
        self.bar.refresh()
        if skipped:
            self.bar.write(f"resuming: {skipped} file(s) already {self.done} in {self.out}")

    def step(self, result: Any) -> None:
        self.bar.update(1)
        if isinstance(result, dict):  # a manifest row (dataset export): name the image
            if result.get("status") == "failed":
                self.bar.write(f"failed: {result.get('image_id')}: {result.get('error')}")
        elif getattr(result, "status", None) == "failed":  # the error names the file
            self.bar.write(f"failed: {result.error}")

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def run_batch(desc: str, args: Any, fn: Callable[..., R], *fn_args: Any, done: str = "processed", **fn_kwargs: Any) -> R:
    """``fn(*fn_args, progress=..., on_start=..., **fn_kwargs)`` under a :class:`BatchProgress` bar
    named ``desc`` (``args.out``, ``args.quiet`` from the command line); its summary."""
    with BatchProgress(desc, args.out, quiet=args.quiet, done=done) as bar:
        return fn(*fn_args, progress=bar.step, on_start=bar.start, **fn_kwargs)


def finish(summary: Any, line: str, where: str) -> int:
    """Print a batch command's summary ``line``, and its failures with ``where`` to look; the exit status."""
    print(line)
    if summary.failed:
        print(f"error: {summary.failed} of {summary.total} input(s) failed; see {where}", file=sys.stderr)
        return 1
    return 0
