"""Shared by the tests of jobs that write a file for download (the contact and segment exports):
a worker killed while writing, and the downloaded file read back."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import core.jobs.files


class WorkerKilled(BaseException):  # noqa: N818 (stands for a SIGKILL: nothing catches it)
    """A worker dying mid-job: unlike an exception the job catches and records, it unwinds the
    delivery and leaves the job running, as a killed process does."""


@contextmanager
def killed_after_writes(count: int) -> Iterator[list[int]]:
    """The worker dies right after writing its ``count``-th chunk to the file, before that chunk's
    commit; yields the file's lengths after each write."""
    real_append = core.jobs.files.file_append
    lengths: list[int] = []

    def append_then_die(path: Path, *, at: int, data: bytes) -> int:
        length = real_append(path, at=at, data=data)
        lengths.append(length)
        if len(lengths) == count:
            raise WorkerKilled
        return length

    with mock.patch("core.jobs.files.file_append", append_then_die), pytest.raises(WorkerKilled):
        yield lengths


def downloaded_rows(download: Any) -> list[dict[str, str]]:
    """A Playwright download of an export, read as the CSV's rows (by header)."""
    return list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"), newline="")))


@contextmanager
def second_chunk_fails() -> Iterator[None]:
    """The export's second chunk raises (the database went away): the job records it as failed."""
    from contacts import csvio  # local import: this module is shared by tests of several areas

    real_chunk = csvio.contacts_export_chunk
    calls: list[Any] = []

    def chunk_failing_once(queryset: Any, *, after_id: int | None, size: int) -> Any:
        calls.append(after_id)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real_chunk(queryset, after_id=after_id, size=size)

    with mock.patch("contacts.csvio.contacts_export_chunk", chunk_failing_once):
        yield
