"""import-katib: the shell-line splitter and the mpirun/horovodrun stripper."""

from __future__ import annotations

from openautoglm.katib import shell_words, strip_mpi_launcher


def test_shell_words() -> None:
    assert shell_words("python a.py --x='a b' --y=\"${trialParameters.y}\"") == (
        ["python", "a.py", "--x=a b", "--y=${trialParameters.y}"],
        None,
    )
    # Katib replaces placeholders as text before any shell: inside single quotes too.
    assert shell_words("python a.py '${trialParameters.y}'")[0] == ["python", "a.py", "${trialParameters.y}"]
    assert shell_words("python a.py 'a|b;c'")[0] == ["python", "a.py", "a|b;c"]
    assert shell_words("")[1] == "the shell script is empty"


def test_strip_mpi_launcher() -> None:
    program, info, why = strip_mpi_launcher(["mpirun", "-n", "4", "-genv", "A", "1", "--", "python", "x.py", "-n", "2"])
    assert (program, why) == (["python", "x.py", "-n", "2"], None)
    assert info["np"] == 4 and info["env"] == {"A": "1"}
    assert strip_mpi_launcher(["mpirun", "-np"])[2] == "-np has no value"
    assert strip_mpi_launcher(["mpirun", "--allow-run-as-root"])[2] == "no program after the mpirun options"
