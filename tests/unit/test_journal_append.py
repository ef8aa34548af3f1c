"""Issue 13, case 7 at the file level: a study journal on a volume that fills up (a real 256 KiB
tmpfs, so the kernel's own short write and ENOSPC). Optuna's file backend keeps the part of a
record that fit, and the next append makes the journal unreadable for good; ours keeps a record
whole or not at all."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

from openautoglm.engine.storage import (
    ROOM_NEEDED_BYTES,
    JournalWriteError,
    check_room,
    fault_message,
    open_storage,
)
from openautoglm.k8s import builders

PAGE = 4096
#: Larger than any slack left in a file's last page: the kernel takes part of it, then ENOSPC.
BIG = "x" * 3 * PAGE


def _study_on(journal: Path, storage: optuna.storages.BaseStorage) -> optuna.Study:
    study = optuna.create_study(study_name="full", storage=storage, direction="maximize")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    while journal.stat().st_size % PAGE == 0:  # no slack in the last page: no short write to see
        study.set_user_attr("pad", "p")
    return study


def _records(journal: Path) -> list[dict]:
    data = journal.read_bytes()
    assert data.endswith(b"\n"), f"the journal ends in a cut-short record: {data[-80:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def _stock(journal: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))


def test_optunas_own_backend_corrupts_a_journal_on_a_full_volume(small_volume):
    """Why ours exists, and proof that the volume below really cuts a write short: with Optuna's
    backend the failed record is half there, and once there is room the next record glues onto
    it, after which the study cannot be loaded."""
    journal = small_volume.path / "study.journal"
    study = _study_on(journal, _stock(journal))
    small_volume.fill()
    before = journal.stat().st_size
    with pytest.raises(OSError) as raised:
        study.set_user_attr("big", BIG)
    assert raised.value.errno == errno.ENOSPC
    assert before < journal.stat().st_size < before + len(BIG), "no short write: this test proves nothing"
    small_volume.free()
    study.set_user_attr("after", 1)  # glued onto the cut-short record: a line no reader can parse
    with pytest.raises(ValueError):  # from the next record on, even the writer cannot read its study
        study.set_user_attr("after", 2)
    with pytest.raises(ValueError):
        optuna.load_study(study_name="full", storage=_stock(journal))


def test_a_record_refused_by_a_full_volume_leaves_the_journal_as_it_was(small_volume):
    journal = small_volume.path / "study.journal"
    study = _study_on(journal, open_storage(str(journal)))
    small_volume.fill()
    before = journal.read_bytes()
    with pytest.raises(JournalWriteError) as raised:
        study.set_user_attr("big", BIG)
    assert raised.value.errno == errno.ENOSPC and raised.value.no_room
    assert journal.read_bytes() == before  # not one byte of the refused record
    message = fault_message(raised.value, str(journal))
    assert str(journal) in message and "no space left on device (ENOSPC)" in message
    # The process goes on with the same storage: its view never saw the refused record.
    assert "big" not in study.user_attrs and len(study.trials) == 1
    small_volume.free()
    study.set_user_attr("big", BIG)
    reloaded = optuna.load_study(study_name="full", storage=open_storage(str(journal)))
    assert reloaded.user_attrs["big"] == BIG and [t.value for t in reloaded.trials] == [0.5]
    assert len(_records(journal)) == len(before.splitlines()) + 1


def test_a_cut_short_record_left_by_another_writer_is_dropped_before_the_next(small_volume):
    """A journal that Optuna's backend (or a writer killed mid-write) left ending in part of a
    record is whole again after our next append, and loads."""
    journal = small_volume.path / "study.journal"
    study = _study_on(journal, _stock(journal))
    small_volume.fill()
    with pytest.raises(OSError):
        study.set_user_attr("big", BIG)
    assert not journal.read_bytes().endswith(b"\n")
    small_volume.free()
    ours = optuna.load_study(study_name="full", storage=open_storage(str(journal)))
    ours.set_user_attr("after", 1)
    records = _records(journal)
    assert records[-1]["user_attr"] == {"after": 1}
    reloaded = optuna.load_study(study_name="full", storage=open_storage(str(journal)))
    assert reloaded.user_attrs.get("after") == 1 and "big" not in reloaded.user_attrs


def test_room_is_checked_by_writing_and_nothing_is_left_behind(small_volume):
    journal = small_volume.path / "study.journal"
    open_storage(str(journal))
    check_room(str(journal))  # 256 KiB free: room
    small_volume.fill()
    with pytest.raises(JournalWriteError) as raised:
        check_room(str(journal))
    assert raised.value.no_room
    small_volume.free()
    check_room(str(journal))
    assert sorted(p.name for p in small_volume.path.iterdir()) == ["study.journal"]
    assert ROOM_NEEDED_BYTES < 256 * 1024
    check_room("postgresql://nobody@127.0.0.1:1/none")  # a database: nothing to check here


def test_no_inode_left_for_the_lock_file_is_the_same_fault(tmp_path):
    """JournalFileOpenLock creates a lock file per append: on a volume out of inodes (tmpfs
    nr_inodes) that fails before a byte is written, and is reported as the same write fault."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "few-inodes"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=4", "tmpfs", str(mnt)], check=True)
    try:
        journal = mnt / "study.journal"
        study = optuna.create_study(study_name="full", storage=open_storage(str(journal)))
        filler = [mnt / f"f{i}" for i in range(8)]
        made = []
        for f in filler:
            try:
                f.touch()
            except OSError as err:
                assert err.errno == errno.ENOSPC
                break
            made.append(f)
        before = journal.read_bytes()
        with pytest.raises(JournalWriteError) as raised:
            study.set_user_attr("a", 1)
        assert raised.value.no_room and journal.read_bytes() == before
        made[0].unlink()
        study.set_user_attr("a", 1)
        assert optuna.load_study(study_name="full", storage=open_storage(str(journal))).user_attrs == {"a": 1}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_journal_volume_stalls_the_job_with_its_own_reason():
    """The condition a user (kubectl wait, kstatus, Argo CD) reads: Stalled, StorageFull, why."""
    import datetime as dt

    err = JournalWriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/studies/default/j.journal")
    previous = {"phase": "Running", "conditions": []}
    status = builders.build_stalled_status(
        previous,
        generation=3,
        now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        message=fault_message(err, "/studies/default/j.journal"),
        reason=builders.STORAGE_FULL,
    )
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Stalled"]["status"] == "True" and conds["Stalled"]["reason"] == "StorageFull"
    assert "no space left on device" in conds["Stalled"]["message"]
    assert "resumes when the volume has room again" in conds["Stalled"]["message"]
    assert conds["Reconciling"]["status"] == "False" and conds["Running"]["status"] == "True"
    assert status["phase"] == "Running"
