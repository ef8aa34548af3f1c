"""``python -m openautoglm.crd``: write the TuningJob CRD generated from the model, or ``--check``
that the committed file is what the model gives (CI and tests/k8s/test_crd.py run it), so the two
cannot drift apart."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from openautoglm.crd.definition import CRD_FILE, render

DESCRIPTION = "The TuningJob CustomResourceDefinition, derived from the pydantic model in spec.py."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m openautoglm.crd", description=DESCRIPTION)
    p.add_argument("--check", action="store_true", help="exit 1 if the file differs from the model's CRD")
    p.add_argument("--output", type=Path, default=CRD_FILE, help=f"default: {CRD_FILE}")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), str(args.output), "generated from spec.py", n=2
            )
            sys.stderr.writelines(diff)
            print(f"\n{args.output} is out of date: run `python -m openautoglm.crd`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0
