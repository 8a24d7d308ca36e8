"""Fetching and unpacking dataset archives: resumable, checksummed, safe to extract.

torchvision's ``download_url`` knows the official URLs and MD5 sums (we read them from its
dataset classes) but always restarts a download from byte 0 and extracts any member path as
given. A 2 GB VOC archive over a flaky link needs HTTP range requests, and an archive from a
mirror must not write outside its folder, so those two parts are written here, and so is the
MD5 (hashlib in chunks, as torchvision's ``calculate_md5``: importing torchvision for it would
load torch, 6 s of every ``prepare`` on a 2-core CPU, for a stage that runs no network). Tar
archives (VOC, SBD) and zip archives (COCO) pass the same
member checks before anything is written.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from destseg.runtime.files import naming_storage_errors

CHUNK = 1 << 20
# What one extracted member may take, checked from the archive's headers before anything is
# written. The largest member of the real archives is COCO's instances_train2014.json (about
# 330 MB; the images are JPEGs of under 1 MB, VOC's and SBD's members smaller still): 1 GiB
# leaves three times that. A zip member also states its compressed size: JSON deflates about
# 5 to 1 and JPEGs not at all, while a run of one byte deflates about 1000 to 1, so a member
# of over 1 MiB that inflates more than 50 times is refused as a decompression bomb. (A tar
# member's size is the tar's own header, whatever compresses the whole stream.)
MAX_MEMBER_BYTES = 1 << 30
MAX_RATIO = 50
RATIO_CHECKED_ABOVE = 1 << 20


class DownloadError(OSError):
    """An archive could not be fetched or failed its checksum; the message says what to do."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder."""


@dataclass(frozen=True)
class Archive:
    """One dataset archive: where it comes from, its file name and its MD5 sum (``md5_param``:
    the param that gave it, named when a file does not match it)."""

    url: str
    filename: str
    md5: str
    md5_param: str = ""


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """The MD5 of the file at ``path``, read a MiB at a time (archives are gigabytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _manual_hint(archive: Archive, path: Path) -> str:
    return (
        f"download {archive.url} by hand and place it at {path} (MD5 {archive.md5}); "
        "it is then verified and used without a download"
    )


def _request(url: str, start: int) -> urllib.request.Request:
    headers = {"User-Agent": "destseg"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _download(url: str, part: Path, start: int, timeout: float) -> None:
    """Append to ``part`` from byte ``start`` (or rewrite it when the server ignores ranges)."""
    with urllib.request.urlopen(_request(url, start), timeout=timeout) as response:
        resumed = start > 0 and response.status == 206
        total = response.headers.get("Content-Length")
        with open(part, "ab" if resumed else "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    received = part.stat().st_size - (start if resumed else 0)
    if total is not None and received < int(total):
        raise http.client.IncompleteRead(b"", int(total) - received)


def fetch(archive: Archive, folder: Path, timeout: float = 60.0) -> Path:
    """``folder/archive.filename``, downloaded unless already there with the right MD5.

    Bytes arrive in ``<filename>.part``; a later call resumes it with a range request (or starts
    over when the server ignores ranges), and only a complete file with the right MD5 is renamed
    to its final name. A wrong checksum deletes the partial file so the next call starts afresh.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / archive.filename
    if path.is_file():
        if file_md5(path) == archive.md5:
            return path
        given = (
            f"{archive.md5_param} says {archive.md5}"
            if archive.md5_param
            else (f"expected {archive.md5}")
        )
        raise DownloadError(
            f"{path}: MD5 mismatch for an existing file (its MD5 is {file_md5(path)}, "
            f"{given}): if the file is the archive you meant, the MD5 given is wrong; if not, "
            "delete the file to download it again"
        )
    part = path.with_name(path.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    try:
        _download(archive.url, part, start, timeout)
    except urllib.error.HTTPError as err:
        # 416: the partial file already holds every byte (killed before the rename)
        if not (start and err.code == 416):
            raise DownloadError(
                f"could not download {archive.url} (HTTP {err.code} {err.reason}); "
                + _manual_hint(archive, path)
            ) from None
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err.__class__.__name__
        raise DownloadError(
            f"could not download {archive.url} ({reason}); run the stage again to resume, or "
            + _manual_hint(archive, path)
        ) from None
    digest = file_md5(part)
    if digest != archive.md5:
        part.unlink()
        raise DownloadError(
            f"{archive.url}: MD5 {digest} does not match the expected {archive.md5}; the partial "
            "file was removed. Check the URL in params.yaml or " + _manual_hint(archive, path)
        )
    part.rename(path)
    return path


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} would extract outside")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in target.parts:
            raise UnsafeArchiveError(
                f"{archive}: link {member.name!r} -> {member.linkname!r} points outside"
            )
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or a FIFO")


def _check_zip_member(member: zipfile.ZipInfo, archive: Path) -> None:
    """A zip member names its path with either separator, and a Unix link only in its mode
    bits: both are checked as a tar member's are."""
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {member.filename!r} would extract outside")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise UnsafeArchiveError(f"{archive}: member {member.filename!r} is a link")


def _check_size(name: str, size: int, compressed: int | None, archive: Path) -> None:
    if size > MAX_MEMBER_BYTES:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} would extract to {size / 2**30:.1f} GiB, more than "
            f"the {MAX_MEMBER_BYTES / 2**30:.0f} GiB any member of the dataset's archives takes"
        )
    if compressed is not None and size > RATIO_CHECKED_ABOVE and size > MAX_RATIO * compressed:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} inflates {size / max(compressed, 1):.0f} times "
            f"({compressed} bytes to {size}), more than the {MAX_RATIO} of any real dataset "
            "file: a decompression bomb, not extracted"
        )


def _extract_zip(archive: Path, dest: Path, keep: Callable[[str], bool]) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                _check_zip_member(member, archive)
            chosen = [m for m in members if keep(m.filename)]
            for member in chosen:
                _check_size(member.filename, member.file_size, member.compress_size, archive)
            with naming_storage_errors(dest):  # not the output the extraction is for
                bundle.extractall(dest, members=chosen)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DownloadError(f"{archive}: not a readable zip archive ({err})") from None
    return [m.filename for m in chosen]


def extract(
    archive: Path, dest: Path, keep: Callable[[str], bool] = lambda name: True
) -> list[str]:
    """Extract the members of a tar archive (any compression) or a zip archive whose name
    ``keep`` accepts.

    Every member is checked before anything is written: an absolute path, a ``..`` component,
    a link pointing outside (any link, in a zip), or a device file rejects the whole archive,
    and so does a member to extract that is larger than any of the real archives' or inflates
    like a decompression bomb (``MAX_MEMBER_BYTES``, ``MAX_RATIO``).
    Returns the names extracted.
    """
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, keep)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            chosen = [m for m in members if keep(m.name)]
            for member in chosen:
                _check_size(member.name, member.size, None, archive)
            # the "data" filter (Python 3.10.12+) adds a second line of defence where it exists
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            with naming_storage_errors(dest):  # not the output the extraction is for
                tar.extractall(dest, members=chosen, **extra)
    except tarfile.TarError as err:
        raise DownloadError(f"{archive}: not a readable tar archive ({err})") from None
    return [m.name for m in chosen]


def under(*prefixes: str) -> Callable[[str], bool]:
    """A ``keep`` filter for :func:`extract`: members below any of ``prefixes``."""
    roots = [PurePosixPath(p) for p in prefixes]

    def keep(name: str) -> bool:
        path = PurePosixPath(name)
        return any(path == root or root in path.parents for root in roots)

    return keep
