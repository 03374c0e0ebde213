"""Claiming a study's store for one driver, and what the driver writes last: the report.

Before Ray starts, `claimed_store` takes the store's lock (a local `flock`, or an object
store's lease) and checks that the store and the report destination take writes, so a busy,
unwritable or unreachable store is one line with nothing started. `write_study_report` builds
the report on the driver from the store (copied locally first when the store is an object
store) and writes it to a local folder or, for a URI `report:`, to the object store.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from sweeper.store.object_store import check_report_writable, is_uri, join_uri, local_path_of, upload_folder
from sweeper.store.local import MARKER_NAME, Location, StoreError, check_writable, identity_problem, marker

if TYPE_CHECKING:
    from sweeper.store.lease import Lease
    from sweeper.store.object_store import ObjectStore
    from sweeper.store.local import Store
    from sweeper.study.model import Study

# errno values that mean "the store cannot take more writes", not a bug
STORE_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def report_location(study: "Study") -> Location:
    """`<report>/<name>`: a local folder (absolute, not resolved: a symlink is refused) or a URI."""
    if is_uri(study.report):
        return join_uri(study.report, study.name)
    return (Path(local_path_of(study.report)) / study.name).absolute()


def check_report_destination(report_dir: Location) -> None:
    if isinstance(report_dir, str) and is_uri(report_dir):
        check_report_writable(report_dir)
    else:
        check_writable(Path(report_dir), "the report folder")


@contextlib.contextmanager
def claimed_store(store: "Store | ObjectStore", report_dir: Location | None, study_name: str) -> Iterator["Lease | None"]:
    """Hold the study's lock with the store and report destination checked writable (before hours
    of training, and before Ray starts); give the object store's lease (None for a local `flock`).
    A run refused inside leaves no local folder behind that it made.

    A folder that is not empty and is not this study's store is refused before anything is written
    into it; the store is marked as this study's (`MARKER_NAME`) once the lock is held."""
    problem = identity_problem(store, study_name)
    if problem:
        raise StoreError(problem)
    local_report = report_dir is not None and not (isinstance(report_dir, str) and is_uri(report_dir))
    made = [top for top in (None if store.remote else _first_missing(store.root), _first_missing(Path(report_dir)) if local_report else None)
            if top is not None]  # fmt: skip
    try:
        with store.lock() as lease:
            store.check_writable("the study store")
            if report_dir is not None:
                check_report_destination(report_dir)
            if not store.has(MARKER_NAME):
                store.put_json(MARKER_NAME, marker(study_name))
            yield lease
    except BaseException:
        for top in made:
            _remove_if_only_the_lock(top)
        raise


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what a mkdir -p would create)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            return missing
        missing = candidate
    return missing


def _remove_if_only_the_lock(top: Path) -> None:
    """Remove `top` if all it holds are empty folders and the store's `.lock` (what a refused run made)."""
    if not top.is_dir() or top.is_symlink():
        return
    files = [f for f in top.rglob("*") if not f.is_dir()]
    if all(f.name == ".lock" for f in files):
        shutil.rmtree(top, ignore_errors=True)


@dataclass(frozen=True)
class WrittenReport:
    index: str  # where index.html is: a local path or a URI
    answer: str  # the warnings, verdict and headline, as the report states them (its summary.txt)


def write_study_report(store: "Store | ObjectStore", report_dir: Location) -> WrittenReport:
    """Build the report from the store on this machine and write it to `report_dir`; not at all
    by a driver whose lease another driver took (`LeaseLost`)."""
    from sweeper.report import ANSWER_NAME, write_report

    store.check_fence()

    remote_report = isinstance(report_dir, str) and is_uri(report_dir)
    if not store.remote and not remote_report:
        index = write_report(store.root, Path(report_dir))
        return WrittenReport(str(index), (index.parent / ANSWER_NAME).read_text())
    with tempfile.TemporaryDirectory(prefix="s3l-report-") as scratch:
        source = store.mirror(Path(scratch) / "store") if store.remote else store.root
        out = Path(scratch) / "report" if remote_report else Path(report_dir)
        index = write_report(source, out)
        answer = (index.parent / ANSWER_NAME).read_text()
        if remote_report:
            store.check_fence()  # the report took a while to build: is the lease still ours?
            upload_folder(out, str(report_dir))
            return WrittenReport(join_uri(str(report_dir), "index.html"), answer)
        return WrittenReport(str(index), answer)


def store_fault(exc: BaseException, store: "Store | ObjectStore", report_dir: Location | None) -> str | None:
    """Why the store or report destination cannot be written, if that is what ended the run."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StoreError):
            return str(seen)
        if isinstance(seen, OSError) and seen.errno in STORE_FULL_ERRNOS:
            return f"cannot write to {seen.filename or store.location}: {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    try:
        store.check_writable("the study store")
        if report_dir is not None:
            check_report_destination(report_dir)
    except StoreError as fault:
        return str(fault)
    return None
