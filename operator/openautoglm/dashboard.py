"""``openautoglm dashboard``: optuna-dashboard over our studies, read-only.

Where studies live differs by how a job ran: one journal file per TuningJob on the operator's
volume (``OPENAUTOGLM_STUDY_DIR/<namespace>/<job>-<uid>.journal``), a journal under a local run's
work directory, or one PostgreSQL database for many jobs. optuna-dashboard reads one storage, so
``StudyShelf`` shows them as one: every study of a database, of a journal file, or of every
``*.journal`` under a folder (files that appear later are picked up on the next listing). A name
found in more than one file (a TuningJob deleted and created again leaves its old journal; local
work directories repeat job names) gets the file's name appended, so that optuna-dashboard, which
looks studies up by name, never shows one study's trials under another. A file that cannot be read
is left out of the listing (and logged), not the whole page.

It is read-only on purpose: the dashboard can delete studies, write notes and tell trials, and
the operator is the one writer of a job's study. Every write raises ``ReadOnlyStorageError``,
which the dashboard shows as a failed request; nothing reaches the files or the database.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from openautoglm.engine.storage import is_rdb_url, open_storage

log = logging.getLogger(__name__)
#: A study's and a trial's id on the shelf: the source's index in the high bits, its own id below.
_SHIFT = 32


class ReadOnlyStorageError(RuntimeError):
    """The dashboard tried to change a study."""


class StudyShelf(BaseStorage):
    """Every study of a PostgreSQL URL, a journal file, or the ``*.journal`` files under a folder."""

    def __init__(self, location: str) -> None:
        location = location if is_rdb_url(location) else location.removeprefix("journal://")
        if not is_rdb_url(location) and not Path(location).expanduser().exists():
            raise FileNotFoundError(f"no study storage at {location}: give a journal file, a folder or a database URL")
        self.location = location
        self._sources: dict[str, tuple[int, BaseStorage]] = {}
        #: index -> (key, storage): the same sources by id (ids carry the index)
        self._by_index: dict[int, tuple[str, BaseStorage]] = {}
        #: shelf name -> shelf id, and back (names are unique on the shelf)
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._unreadable: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sources
    def _keys(self) -> list[str]:
        if is_rdb_url(self.location):
            return [self.location]
        path = Path(self.location).expanduser()
        if path.is_file():
            return [str(path)]
        return sorted(str(p) for p in path.rglob("*.journal") if p.is_file())

    def sources(self) -> list[tuple[int, BaseStorage]]:
        """(index, storage) for each source, opening those seen for the first time."""
        keys = self._keys()
        with self._lock:
            for key in keys:
                if key not in self._sources:
                    try:
                        storage = open_storage(key)  # a journal is read whole here
                    except Exception as err:  # noqa: BLE001 (one bad file must not hide the others)
                        if key not in self._unreadable:
                            log.warning("leaving out %s: cannot read it: %s", key, err)
                        self._unreadable.add(key)  # tried again at the next listing (it may be mid-write)
                        continue
                    index = len(self._sources)
                    self._sources[key] = (index, storage)
                    self._by_index[index] = (key, storage)
            return [self._sources[k] for k in keys if k in self._sources]

    def _local(self, shelf_id: int) -> tuple[int, BaseStorage, int]:
        index, local = shelf_id >> _SHIFT, shelf_id & ((1 << _SHIFT) - 1)
        if index not in self._by_index:
            self.sources()
        if index not in self._by_index:
            raise KeyError(f"no study or trial with id {shelf_id}")
        return index, self._by_index[index][1], local

    @staticmethod
    def _trial(index: int, trial: FrozenTrial) -> FrozenTrial:
        shelved = copy.copy(trial)  # the source's own object may be cached: do not change it
        shelved._trial_id = (index << _SHIFT) | trial._trial_id
        return shelved

    # ------------------------------------------------------------------ reads
    def get_all_studies(self) -> list[FrozenStudy]:
        found: list[tuple[int, str, FrozenStudy]] = []
        for index, storage in self.sources():
            try:
                found += [(index, self._source_name(index), s) for s in storage.get_all_studies()]
            except Exception as err:  # noqa: BLE001 (one bad file must not hide the others)
                log.warning("skipping %s: cannot read it: %s", self._source_name(index), err)
        counts: dict[str, int] = {}
        for _, _, s in found:
            counts[s.study_name] = counts.get(s.study_name, 0) + 1
        studies = []
        with self._lock:
            for index, source, s in found:
                shelf_id = (index << _SHIFT) | s._study_id
                name = s.study_name if counts[s.study_name] == 1 else f"{s.study_name} [{source}]"
                self._ids[name], self._names[shelf_id] = shelf_id, name
                studies.append(
                    FrozenStudy(
                        study_name=name,
                        direction=None,
                        directions=s.directions,
                        user_attrs=s.user_attrs,
                        system_attrs=s.system_attrs,
                        study_id=shelf_id,
                    )
                )
        return studies

    def _source_name(self, index: int) -> str:
        key = self._by_index[index][0]
        return key if is_rdb_url(key) else Path(key).name

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name not in self._ids:
            self.get_all_studies()
        if study_name not in self._ids:
            raise KeyError(f"no study named {study_name!r} in {self.location}")
        return self._ids[study_name]

    def get_study_name_from_id(self, study_id: int) -> str:
        if study_id not in self._names:
            self.get_all_studies()
        if study_id not in self._names:
            raise KeyError(f"no study with id {study_id}")
        return self._names[study_id]

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        _, storage, local = self._local(study_id)
        return storage.get_study_directions(local)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        _, storage, local = self._local(study_id)
        return storage.get_study_user_attrs(local)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        _, storage, local = self._local(study_id)
        return storage.get_study_system_attrs(local)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        index, storage, local = self._local(trial_id)
        return self._trial(index, storage.get_trial(local))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        index, storage, local = self._local(study_id)
        return [self._trial(index, t) for t in storage.get_all_trials(local, deepcopy=deepcopy, states=states)]

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        index, storage, local = self._local(study_id)
        return (index << _SHIFT) | storage.get_trial_id_from_study_id_trial_number(local, trial_number)

    # ------------------------------------------------------------------ writes: refused
    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise ReadOnlyStorageError(
            f"the dashboard is read-only ({self.location}): the operator or `openautoglm tune` owns these studies"
        )

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self._refuse()

    delete_study = set_study_user_attr = set_study_system_attr = _refuse
    create_new_trial = set_trial_param = set_trial_state_values = _refuse
    set_trial_intermediate_value = set_trial_user_attr = set_trial_system_attr = _refuse


def default_location() -> str:
    """Where this machine's studies are, when no storage is given: OPENAUTOGLM_STORAGE, else the
    operator's study folder if it exists, else ./.openautoglm (a local run's default)."""
    from openautoglm import config

    cfg = config.load()
    if cfg.storage:
        return cfg.storage
    if Path(cfg.study_dir).is_dir():
        return cfg.study_dir
    return ".openautoglm"


def serve(shelf: StudyShelf, host: str, port: int) -> None:
    """optuna-dashboard over ``shelf`` until interrupted."""
    try:
        import optuna_dashboard
    except ImportError as err:
        raise ImportError("optuna-dashboard is not installed: pip install 'openautoglm-tune[dashboard]'") from err
    optuna_dashboard.run_server(shelf, host=host, port=port)
