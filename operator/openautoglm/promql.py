"""PromQL templates of ``metrics.prometheus.query``: four named placeholders, nothing else.

A template is the author's text, so it is filled by plain substitution, never ``str.format``:
``{trial:300000000}`` made str.format allocate 286 MiB before any network call, and
``{job.nope}`` / ``{trial[0]}`` raised outside every ``except`` of the metric source. Here:

* ``{namespace}``, ``{job}``, ``{trial}`` and ``{metric}`` are replaced by the TuningJob's
  namespace and name, the trial number and the metric's name. Each is a DNS label, a number or
  a metric name (letters, digits, ``_ . -``), so a value can never end the PromQL string it
  stands in;
* every other brace is PromQL's own (``x{job="{job}"}``), except a brace pair that holds no
  label-matcher character (``= ~ ! " ' ` ``): that can only be a misspelt placeholder and is
  refused, as are ``{{`` and ``}}`` (str.format's escapes, which PromQL never contains);
* at most :data:`MAX_QUERY_LENGTH` characters.

The same rule is a regex (:data:`UNKNOWN_PLACEHOLDER_RE`, RE2 syntax) for the CRD's CEL rule, so
``openautoglm validate`` and the API server refuse the same templates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

#: The placeholders a template may hold, in the order docs/reference.md lists them.
PLACEHOLDERS: Final = ("namespace", "job", "trial", "metric")
MAX_QUERY_LENGTH: Final = 2048
#: What a brace pair of a label matcher always holds (= ~ ! " ' `); a pair without any is a
#: placeholder. Quotes as hex escapes: the regex also goes into a quoted CEL string (RE2 reads them).
_MATCHER_CHARS: Final = r"=~!\x22\x27\x60"
_CONTENT: Final = "[^{}" + _MATCHER_CHARS + "]"
#: A brace pair that is a placeholder (known or not): ``{`` + non-matcher text + ``}``.
PLACEHOLDER_RE: Final = re.compile(r"\{(" + _CONTENT + r"+)\}")
#: The default query: the trial gauge of rank 0's scrape, by the labels deploy/prometheus-scrape
#: gives trial pods (namespace included: two namespaces may run jobs of the same name).
DEFAULT_QUERY: Final = (
    'max by (metric) (openautoglm_trial_metric{namespace="{namespace}",'
    'openautoglm_job="{job}",openautoglm_trial="{trial}"})'
)
EPOCH_QUERY: Final = (
    'max(openautoglm_trial_epoch{namespace="{namespace}",openautoglm_job="{job}",openautoglm_trial="{trial}"})'
)


def _class(excluded: str) -> str:
    """A character class of placeholder text without ``excluded`` (RE2 and Python alike)."""
    return "[^{}" + _MATCHER_CHARS + excluded + "]"


def _not_a_word(words: list[str], depth: int = 0) -> str:
    """A regex for the non-empty placeholder texts that are none of ``words`` (all continuing
    the same prefix of length ``depth``): RE2 has no lookahead, so the complement of the finite
    set is spelt out along its trie."""
    children: dict[str, list[str]] = {}
    ends_here = False
    for w in words:
        if len(w) == depth:
            ends_here = True
        else:
            children.setdefault(w[depth], []).append(w)
    branches = [_class("".join(children)) + _CONTENT + "*"]
    branches += [re.escape(ch) + _not_a_word(ws, depth + 1) for ch, ws in sorted(children.items())]
    body = "(?:" + "|".join(branches) + ")"
    # Stopping here is "not a word" unless a word ends here (or nothing was read yet).
    return body if ends_here or depth == 0 else body + "?"


#: Matches (anywhere in a template) a brace pair that looks like a placeholder but names none of
#: PLACEHOLDERS: what the CRD's CEL rule refuses.
UNKNOWN_PLACEHOLDER_RE: Final = r"\{" + _not_a_word(sorted(PLACEHOLDERS)) + r"\}"


def template_problems(query: str) -> list[str]:
    """Why a query template is refused (empty when it is fine)."""
    problems = []
    if len(query) > MAX_QUERY_LENGTH:
        problems.append(f"at most {MAX_QUERY_LENGTH} characters, got {len(query)}")
    if "{{" in query or "}}" in query:
        problems.append("'{{' and '}}' are not PromQL; write single braces (placeholders are not str.format)")
    unknown = sorted({m.group(0) for m in PLACEHOLDER_RE.finditer(query) if m.group(1) not in PLACEHOLDERS})
    if unknown:
        shown = ", ".join(u if len(u) <= 40 else u[:37] + "...}" for u in unknown[:5])
        allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        problems.append(f"unknown placeholder {shown}; a template may use only {allowed}")
    return problems


def fill(query: str, values: Mapping[str, str | int]) -> str:
    """The template with its placeholders replaced (a checked template: see template_problems).

    Raises:
        ValueError: the template is not one ``template_problems`` accepts.
    """
    if problems := template_problems(query):
        raise ValueError("; ".join(problems))

    def one(m: re.Match[str]) -> str:
        return str(values[m.group(1)])

    return PLACEHOLDER_RE.sub(one, query)


def uses_metric(query: str) -> bool:
    """Whether the template names one metric (``{metric}``): then it is run once per metric."""
    return "{metric}" in query
