"""Resumable HTTP downloads of raw dataset files, and integrity checks.

:func:`download` streams into ``<dest>.part`` and renames it to ``dest`` only once it
is complete, so a file at ``dest`` is always whole: :func:`prepare` can trust it, and
a file placed there by hand is used as is. An interrupted download resumes with an
HTTP ``Range: bytes=N-`` request, both across retries inside one call and across
runs (the ``.part`` file stays on disk).
"""
from __future__ import annotations

import gzip
import os
import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm.auto import tqdm

from ..paths import data_dir, display_path

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(RuntimeError):
    """A download that could not complete; the message says how to get the file by hand."""


class CorruptFileError(DownloadError):
    """A downloaded (or hand-placed) file that is truncated or not what it should be."""


class _Retry(Exception):
    """Internal: this attempt failed in a way that another attempt (resuming) may fix."""


def manual_hint(url: str, dest: Path) -> str:
    """The instruction every failure ends with: where to put the file by hand."""
    return (f"Download {url} by hand (a browser, or `curl -L -C - -o FILE URL` on a machine with internet) "
            f"and place it at {display_path(dest)}\nThen run `python -m harness data prepare` again: it uses "
            "that file without downloading.")


def download(url: str, dest: Path, *, expected_size: int | None = None, retries: int = 3,
             chunk_size: int = 1 << 20, timeout: float = 60, desc: str | None = None,
             backoff: float = 1.0) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` exists; returns ``dest``.

    Bytes go to ``dest.name + ".part"`` next to ``dest``; a later attempt (after a
    connection error or a short read) asks for the rest with ``Range: bytes=N-``:
    206 appends, 200 means the server ignored the range so the file restarts from
    zero, 416 means the part file already holds everything. The rename to ``dest``
    happens only when the size matches ``Content-Length`` / ``Content-Range`` (and
    ``expected_size`` when given). ``retries`` further attempts follow the first,
    waiting ``backoff * 2**k`` seconds between them.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _attempt(url, dest, part, expected_size, chunk_size, timeout, desc or dest.name)
        except _Retry as exc:
            last_error = exc
            continue
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError) as exc:
            last_error = exc  # unreachable host, dropped connection, read timeout: resume next time
            continue
        _check_size(part, expected_size, url, dest)
        os.replace(part, dest)
        return dest
    have = part.stat().st_size if part.exists() else 0
    kept = f" The {have:,} bytes received so far stay in {display_path(part)}; running again resumes." if have else ""
    raise DownloadError(f"could not download {url} after {retries + 1} attempts "
                        f"({type(last_error).__name__}: {last_error}).{kept} {manual_hint(url, dest)}")


def _attempt(url: str, dest: Path, part: Path, expected_size: int | None, chunk_size: int, timeout: float,
             desc: str) -> None:
    """One request: resume ``part`` from its current size; returns when the server says it is complete."""
    have = part.stat().st_size if part.exists() else 0
    # identity: a transparently gzip-encoded response would make byte offsets meaningless for Range.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:
            total = _unsatisfied_total(response, expected_size)
            if total is not None and have == total:
                return  # the part file already holds every byte
            part.unlink(missing_ok=True)  # larger than the file, or unknown: start over
            raise _Retry(f"server refused range bytes={have}- (HTTP 416); restarting from 0")
        if 400 <= response.status_code < 500:
            raise DownloadError(f"{url} answered HTTP {response.status_code} {response.reason}: "
                                "the file may have moved. " + manual_hint(url, dest))
        if response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code} {response.reason}")
        if response.status_code == 206:
            start, total = _content_range(response)
            total = total if total is not None else expected_size
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"server resumed at byte {start}, not {have}; restarting from 0")
            mode = "ab"
        else:  # 200: the server ignored (or was not asked for) the range, so the body is the whole file
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else expected_size
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                   leave=False)
        try:
            with open(part, mode) as out:
                for chunk in _body_chunks(response, chunk_size):
                    out.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"short read: {size:,} of {total:,} bytes")  # the connection closed early


def _body_chunks(response, chunk_size: int):
    """The body as sent (no content decoding: offsets must match the file), in pieces of at most ``chunk_size``.

    ``read1`` returns what has arrived instead of waiting for a full chunk, so when
    the connection breaks every received byte is already on disk for the resume.
    """
    raw = response.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2
        yield from raw.stream(chunk_size, decode_content=False)
        return
    while chunk := raw.read1(chunk_size, decode_content=False):
        yield chunk


def _content_range(response) -> tuple[int, int | None]:
    """(first byte, total size or None) of a 206 response, from ``Content-Range: bytes A-B/T``."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if not match:
        raise _Retry(f"206 without a usable Content-Range ({response.headers.get('Content-Range')!r})")
    total = match.group(3)
    return int(match.group(1)), (int(total) if total != "*" else None)


def _unsatisfied_total(response, expected_size: int | None) -> int | None:
    """Total size stated by a 416 response (``Content-Range: bytes */T``), else ``expected_size``."""
    match = _CONTENT_RANGE_UNSATISFIED.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else expected_size


def _check_size(part: Path, expected_size: int | None, url: str, dest: Path) -> None:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url} gave {size:,} bytes, expected {expected_size:,}: the published file "
                            f"changed or the transfer was corrupted. {manual_hint(url, dest)}")


def verify_gzip(path: Path, chunk_size: int = 1 << 22) -> int:
    """Read a gzip file to its end; returns the uncompressed size.

    Raises :class:`CorruptFileError` when the file is truncated (no end-of-stream
    marker) or not gzip at all, naming the file and what to do.
    """
    path = Path(path)
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while block := handle.read(chunk_size):
                total += len(block)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise CorruptFileError(
            f"{display_path(path)} is truncated or not a valid gzip file ({type(exc).__name__}: {exc}). "
            "Delete it and run `python -m harness data prepare` again to download it afresh.") from exc
    return total


def verify_zip(path: Path) -> None:
    """Cheap check that ``path`` is a whole zip (its central directory, at the very end, is readable)."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(
            f"{display_path(path)} is truncated or not a zip file ({exc}). "
            "Delete it and run `python -m harness data prepare` again to download it afresh.") from exc


@dataclass(frozen=True)
class RawFiles:
    """The published files of one dataset, kept as ``data/raw/<dataset>/<last URL component>``.

    A file placed there by hand is used as is, never downloaded again. ``shared_with``
    names other datasets whose raw folder may already hold the same file (the Amazon
    metadata serves both the 5-core and the raw-review datasets), so it is not
    downloaded twice. ``paths`` and ``fetch`` take the preset only to fit
    ``DatasetSpec.sources`` / ``DatasetSpec.fetch``: every preset reads the same files.
    """

    dataset: str
    urls: tuple[str, ...]
    shared_with: tuple[str, ...] = ()

    def folder(self) -> Path:
        return data_dir() / "raw" / self.dataset

    def path(self, url: str) -> Path:
        name = url.rsplit("/", 1)[-1]
        own = self.folder() / name
        if not own.exists():
            for other in self.shared_with:
                if (data_dir() / "raw" / other / name).exists():
                    return data_dir() / "raw" / other / name
        return own

    def paths(self, preset: str | None = None) -> list[Path]:
        """Where the files are (or will be); downloads nothing."""
        return [self.path(url) for url in self.urls]

    def fetch(self, preset: str | None = None) -> list[Path]:
        """Download the missing files (resuming a ``.part`` left by an earlier run) and check fresh ones."""
        paths = []
        for url in self.urls:
            dest = self.path(url)
            if not dest.exists():
                download(url, dest, desc=f"{self.dataset}: {dest.name}")
                _verify_fresh(dest)
            paths.append(dest)
        return paths


def _verify_fresh(path: Path) -> None:
    """Integrity check of a file just downloaded; a corrupt one is deleted so the next run fetches it again."""
    try:
        if path.name.endswith(".gz"):
            verify_gzip(path)
        elif path.suffix == ".zip":
            verify_zip(path)
    except CorruptFileError as exc:
        path.unlink(missing_ok=True)
        raise CorruptFileError(f"{exc} It was just downloaded, so it has been deleted: run the same command "
                               "again to download it afresh.") from exc


__all__ = ["CorruptFileError", "DownloadError", "RawFiles", "download", "manual_hint", "verify_gzip", "verify_zip"]
