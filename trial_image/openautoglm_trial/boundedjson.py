"""JSON written by someone else, decoded within bounds: a reason instead of a crash.

The termination message, push reports, JSON metric lines and a Prometheus answer are all
written by a program the reader does not trust. ``json.loads`` alone raises RecursionError on
2,000 nested brackets (not a ValueError, so it escaped every ``except ValueError``) and
builds whatever depth it is given; here anything malformed is one ``ValueError`` whose
message says what was wrong, short enough for a trial's failure reason.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Final

#: Deeper than any document of the contract (a termination message nests 3 levels, its
#: ``info`` a few more; a Prometheus answer 5).
MAX_DEPTH: Final = 64
#: A JSON string; its closing quote is optional, so an unclosed string runs to the end of the
#: text and the scan stays linear whatever the text is (no match ever fails and backtracks).
_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


def loads(text: str, *, max_chars: int, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one JSON document.

    Args:
        text: the document.
        max_chars: longer text is refused before it is decoded.
        max_depth: deeper nesting of arrays and objects is refused before it is decoded.

    Returns:
        The decoded value. NaN and Infinity are accepted as Python's decoder does: callers
        check numbers themselves.

    Raises:
        ValueError: with a short reason ("longer than 4096 characters", "nested deeper than
            64 levels", "not JSON (Expecting value: line 1 column 1 (char 0))").
    """
    if len(text) > max_chars:
        raise ValueError(f"longer than {max_chars} characters")
    # Checked first: the decoder recurses in C once per level, as deep as the interpreter's
    # recursion limit allows, and a library may have raised that limit far past what the C
    # stack holds.
    if deeper_than(text, max_depth):
        raise ValueError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except ValueError as err:  # JSONDecodeError, and integers of more than 4,300 digits
        raise ValueError(f"not JSON ({_short(err)})") from None


def deeper_than(text: str, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` in a text, valid JSON or not
    (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # too few brackets to nest that deep: most documents stop here
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return any(depth > max_depth for depth in itertools.accumulate(_DEPTH_STEP[b] for b in brackets))


def _short(err: ValueError) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]
