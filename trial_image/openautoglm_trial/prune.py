"""``python -m openautoglm_trial.prune DIR --below N --keep 3,7``: remove the checkpoint directory
``trial-<M>`` under DIR of every trial M < N not kept (trial.checkpoint.keep).

The operator runs it as a short pod with the job's directory of the checkpoint claim mounted at
DIR: it never mounts a tenant's volume itself. Only direct children named ``trial-<digits>`` are
touched, a symbolic link is removed as a link (never followed), and a directory that vanishes
meanwhile is no error: running it twice, or beside another, removes nothing more.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Final

TRIAL_DIR_RE: Final = re.compile(r"^trial-(\d{1,9})$")


def prune(root: Path, below: int, keep: set[int]) -> list[str]:
    """Remove what is not kept; the names removed, in order."""
    removed: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = TRIAL_DIR_RE.match(entry.name)
        if not m or int(m.group(1)) >= below or int(m.group(1)) in keep:
            continue
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
        else:
            shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
    return removed


def _numbers(text: str) -> set[int]:
    return {int(n) for n in text.split(",") if n.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openautoglm_trial.prune", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="the job's checkpoint directory (holds trial-<N>/)")
    parser.add_argument("--below", type=int, required=True, help="trials numbered below this have finished")
    parser.add_argument("--keep", type=_numbers, default=set(), help="comma-separated trial numbers to keep")
    args = parser.parse_args(argv)
    for name in prune(args.dir, args.below, args.keep):
        print(f"removed {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
