"""Command lines as Katib templates write them, made into the exec form a TuningJob runs.

A Katib trial container often runs ``sh -c "python3 train.py --lr=${trialParameters.lr}"`` or an
MPIJob Launcher's ``mpirun -np 2 ... python3 train.py``. A TuningJob runs its command without a
shell and starts the ranks itself, so :func:`shell_words` splits a shell line that is one simple
command (and refuses what needs a shell), and :func:`strip_mpi_launcher` removes the launcher and
its options, keeping what they said (the rank count, the environment they pass).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any, Final

from openautoglm_trial.contract import PLACEHOLDER

_SHELLS: Final = {"sh", "bash", "dash", "ash", "ksh", "zsh"}
_MASK_OPEN, _MASK_CLOSE = "\ue000", "\ue001"
#: What needs a shell, by the character that starts it: inside double quotes, outside any quotes,
#: outside quotes at the start of a word.
_EXPANSIONS: Final = {"$": "a shell expansion ($...)", "`": "a command substitution (`...`)"}
_UNQUOTED: Final = {
    **_EXPANSIONS,
    **{c: f"the shell operator {c!r}" for c in "|&;<>()"},
    "\n": "several command lines",
    **{c: f"a glob pattern ({c!r})" for c in "*?["},
    **dict.fromkeys("{}", "brace expansion ({...})"),
}
_AT_WORD_START: Final = {"~": "tilde expansion (~)", "#": "a shell comment (#)"}


def shell_words(script: str) -> tuple[list[str] | None, str | None]:
    """Split a ``sh -c`` script into an argv when it is one simple command.

    Returns ``(argv, None)``, or ``(None, reason)`` when the script needs a shell: operators
    (``|``, ``&&``, ``;``, ``>``, ``<``, ``&``), several lines, expansions (``$VAR``, ``$(...)``,
    backquotes), globs, ``~``, comments, brace expansion or variable assignments. Katib's
    ``${trialParameters.X}`` placeholders are not expansions (Katib replaces them before the shell
    runs) and stay in the words.
    """
    placeholders: list[str] = []

    def _mask(m: re.Match[str]) -> str:
        placeholders.append(m.group(0))
        return f"{_MASK_OPEN}{len(placeholders) - 1}{_MASK_CLOSE}"

    masked = PLACEHOLDER.sub(_mask, script.strip())
    if not masked:
        return None, "the shell script is empty"
    if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", masked):
        return None, "a variable assignment (NAME=value)"
    clean, reason = _without_continuations(masked)
    if clean is None:
        return None, reason
    try:
        words = shlex.split(clean, posix=True)
    except ValueError as err:
        return None, f"a line shlex cannot split ({err})"

    def _unmask(word: str) -> str:
        return re.sub(f"{_MASK_OPEN}(\\d+){_MASK_CLOSE}", lambda m: placeholders[int(m.group(1))], word)

    return [_unmask(w) for w in words], None


def _without_continuations(masked: str) -> tuple[str | None, str | None]:
    """``(script, None)`` without its line continuations (shlex would keep them as newlines), or
    ``(None, reason)`` at the first character that needs a shell."""
    quote = ""
    word_start = True
    clean: list[str] = []
    i = 0
    while i < len(masked):
        ch = masked[i]
        if ch == "\\" and quote != "'" and masked[i + 1 : i + 2] == "\n":
            i += 2
            word_start = not quote
            continue
        clean.append(ch)
        if quote == "'":
            quote = "" if ch == "'" else quote
        elif ch == "\\":
            clean.append(masked[i + 1 : i + 2])
            i += 1
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in _EXPANSIONS:
                return None, _EXPANSIONS[ch]
        elif ch in "'\"":
            quote = ch
        elif ch in _UNQUOTED:
            return None, _UNQUOTED[ch]
        elif word_start and ch in _AT_WORD_START:
            return None, _AT_WORD_START[ch]
        word_start = not quote and ch in " \t"
        i += 1
    if quote:
        return None, f"an unterminated {quote} quote"
    return "".join(clean), None


def shell_invocation(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(script, extra args)`` when argv is ``sh -c SCRIPT [ARG0 ...]`` (any usual shell), else None."""
    if len(argv) < 3 or posixpath.basename(argv[0]) not in _SHELLS:
        return None
    i, has_c = 1, False
    while i < len(argv) and re.fullmatch(r"-[ceuxvl]+", argv[i]):
        has_c = has_c or "c" in argv[i]
        i += 1
    if not has_c or i >= len(argv):
        return None
    return argv[i], argv[i + 1 :]


#: What an MPIJob Launcher runs to start the ranks.
LAUNCHERS: Final = {"mpirun", "mpiexec", "orterun", "horovodrun"}
#: Options without an argument (Open MPI, MPICH/Hydra, horovodrun).
_MPI_FLAGS: Final = {
    "--allow-run-as-root",
    "-allow-run-as-root",
    "--oversubscribe",
    "-oversubscribe",
    "--tag-output",
    "-tag-output",
    "--timestamp-output",
    "-timestamp-output",
    "--report-bindings",
    "-report-bindings",
    "--display-map",
    "-display-map",
    "--display-allocation",
    "-display-allocation",
    "-v",
    "--verbose",
    "-q",
    "--quiet",
    "--noprefix",
    "--nolocal",
    "-nolocal",
    "--use-hwthread-cpus",
    "-use-hwthread-cpus",
    "--merge-stderr-to-stdout",
    "-merge-stderr-to-stdout",
    "--bind-to-core",
    "-bind-to-core",
    "--bind-to-socket",
    "-bind-to-socket",
    "--enable-recovery",
    "-l",
    "-prepend-rank",
    "--prepend-rank",
    "--gloo",
    "--mpi",
    "--tcp",
    "--disable-cache",
    "--elastic-timeout-disabled",
    "-print-all-exitcodes",
}
#: Options with one argument.
_MPI_ONE_ARG: Final = {
    "-np",
    "--np",
    "-n",
    "--n",
    "-c",
    "-N",
    "-npernode",
    "--npernode",
    "-npersocket",
    "--npersocket",
    "-H",
    "--host",
    "-host",
    "-hosts",
    "--hosts",
    "-hostfile",
    "--hostfile",
    "-machinefile",
    "--machinefile",
    "-bind-to",
    "--bind-to",
    "-map-by",
    "--map-by",
    "-rank-by",
    "--rank-by",
    "-x",
    "-wdir",
    "--wdir",
    "-wd",
    "--prefix",
    "-prefix",
    "-output-filename",
    "--output-filename",
    "-path",
    "--path",
    "-ppn",
    "-genvlist",
    "-launcher",
    "-iface",
    "-p",
    "--ssh-port",
    "-i",
    "--ssh-identity-file",
    "--start-timeout",
    "--network-interface",
    "--gloo-timeout-seconds",
    "--log-level",
    "--config-file",
    "--min-np",
    "--max-np",
    "--slots-per-host",
    "--slots",
    "--host-discovery-script",
    "--mpi-args",
    "-s",
}
#: Options with two arguments (``-mca KEY VALUE``, ``-genv NAME VALUE``).
_MPI_TWO_ARGS: Final = {"-mca", "--mca", "-gmca", "--gmca", "-env", "-genv"}


def strip_mpi_launcher(argv: list[str]) -> tuple[list[str] | None, dict[str, Any], str | None]:
    """Split ``mpirun [options] PROGRAM ARGS`` into PROGRAM ARGS and what the options said.

    Returns ``(program argv, info, None)`` or ``(None, info, reason)``; ``info`` has ``np``
    (int or None), ``env`` (``-x NAME=VALUE`` / ``-genv NAME VALUE``: name -> value) and
    ``forwarded`` (``-x NAME``: names forwarded from the launcher).
    """
    info: dict[str, Any] = {"np": None, "env": {}, "forwarded": [], "launcher": posixpath.basename(argv[0])}
    i = 1
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-") or tok == "-":
            return argv[i:], info, None
        if tok == "--":
            if i + 1 < len(argv):
                return argv[i + 1 :], info, None
            return None, info, "no program after --"
        opt, eq, inline = tok.partition("=")
        if opt in _MPI_FLAGS and not eq:
            i += 1
            continue
        if opt in _MPI_ONE_ARG:
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if value is None:
                return None, info, f"{opt} has no value"
            if opt in ("-np", "--np", "-n", "--n", "-c"):
                try:
                    info["np"] = int(value)
                except ValueError:
                    pass
            elif opt == "-x":
                name, has_value, v = value.partition("=")
                if has_value:
                    info["env"][name] = v
                else:
                    info["forwarded"].append(name)
            i += 1 if eq else 2
            continue
        if opt in _MPI_TWO_ARGS and not eq:
            if i + 2 >= len(argv):
                return None, info, f"{opt} needs two values"
            if opt in ("-env", "-genv"):
                info["env"][argv[i + 1]] = argv[i + 2]
            i += 3
            continue
        return None, info, f"unknown {info['launcher']} option {tok!r} (cannot tell where the program starts)"
    return None, info, f"no program after the {info['launcher']} options"
