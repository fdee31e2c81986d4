"""Archived files: the stored object (key, sha256, size) of each id's video, cover, sidecar, sound and images."""

from __future__ import annotations

from datetime import date

from .core import StateCore, as_day, read_date, read_dt, utcnow
from .models import FILE_KINDS, FileRecord, is_file_kind


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
        if not is_file_kind(kind):
            raise ValueError(f"record_file: kind must be one of {FILE_KINDS} or 'image-<n>', not {kind!r}")
        day = None if ingest_date is None else as_day(ingest_date)
        self._write(
            "INSERT INTO archived_files (aweme_id, kind, storage_key, sha256, bytes, ingest_date, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (aweme_id, kind) DO UPDATE SET "
            "storage_key = excluded.storage_key, sha256 = excluded.sha256, bytes = excluded.bytes, "
            "ingest_date = excluded.ingest_date, recorded_at = excluded.recorded_at",
            [aweme_id, kind, storage_key, sha256, size, day, utcnow()],
        )

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
