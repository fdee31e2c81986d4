"""Archived files: the stored object (key, sha256, size) of each id's video, cover, sidecar, sound and images."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from .archive_queue import mark_downloaded_in
from .core import StateCore, as_day, read_date, read_dt, utcnow
from .models import FILE_KINDS, FileRecord, is_file_kind

_UPSERT = (
    "INSERT INTO archived_files (aweme_id, kind, storage_key, sha256, bytes, ingest_date, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (aweme_id, kind) DO UPDATE SET "
    "storage_key = excluded.storage_key, sha256 = excluded.sha256, bytes = excluded.bytes, "
    "ingest_date = excluded.ingest_date, recorded_at = excluded.recorded_at"
)

# (kind, storage_key, sha256, size) of one stored object
StoredFile = tuple[str, str, str | None, int | None]


def _checked_kind(kind: str) -> str:
    if not is_file_kind(kind):
        raise ValueError(f"record_file: kind must be one of {FILE_KINDS} or 'image-<n>', not {kind!r}")
    return kind


class FileState(StateCore):
    """archived_files: record an id's stored objects and list them."""

    def record_file(
        self,
        aweme_id: str,
        kind: str,
        storage_key: str,
        sha256: str | None,
        size: int | None,
        ingest_date: date | str | None,
    ) -> None:
        """Upsert the stored object for (aweme_id, kind): 'video', 'cover', 'sidecar', or a photo post's 'sound' and
        'image-<n>'."""
        day = None if ingest_date is None else as_day(ingest_date)
        self._write(_UPSERT, [aweme_id, _checked_kind(kind), storage_key, sha256, size, day, utcnow()])

    def record_files_downloaded(
        self, aweme_id: str, files: Sequence[StoredFile], ingest_date: date | str | None
    ) -> bool:
        """Record every stored object of the id (as :meth:`record_file` does each) and mark it downloaded, in one
        transaction: the id is downloaded exactly when its files are recorded. Call it once every object is in the
        store. Returns what ``mark_downloaded`` would (False if the id is unknown or dead)."""
        day = None if ingest_date is None else as_day(ingest_date)
        rows = [(_checked_kind(kind), key, sha256, size) for kind, key, sha256, size in files]
        now = utcnow()
        with self._tx(write=True) as tx:
            for kind, key, sha256, size in rows:
                tx.execute(_UPSERT, [aweme_id, kind, key, sha256, size, day, now])
            return mark_downloaded_in(tx, aweme_id, now)

    def files_for(self, aweme_id: str) -> list[FileRecord]:
        with self._tx() as tx:
            rows = tx.fetchall(
                "SELECT aweme_id, kind, storage_key, sha256, bytes, ingest_date, recorded_at "
                "FROM archived_files WHERE aweme_id = ? ORDER BY kind",
                [aweme_id],
            )
        return [
            FileRecord(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4]), read_date(r[5]), read_dt(r[6]))
            for r in rows
        ]
