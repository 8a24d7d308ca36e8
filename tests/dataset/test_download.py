"""Downloads against a local HTTP server, and the checks of archive extraction."""

import hashlib
import io
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest
from conftest import ROOT
from http_server import LocalServer, Served

from destseg.dataset.sources.download import (
    Archive,
    DownloadError,
    UnsafeArchiveError,
    extract,
    fetch,
    file_md5,
    under,
)

PAYLOAD = bytes(range(256)) * 400  # 100 kB, not a multiple of the copy chunk


def _archive(url: str, data: bytes = PAYLOAD) -> Archive:
    return Archive(f"{url}/files/data.bin", "data.bin", hashlib.md5(data).hexdigest())


def test_fetch_downloads_verifies_and_then_reuses(tmp_path):
    served = Served(files={"/files/data.bin": PAYLOAD})
    with LocalServer(served) as url:
        path = fetch(_archive(url), tmp_path)
        assert path.read_bytes() == PAYLOAD
        assert fetch(_archive(url), tmp_path) == path
    assert len(served.requests) == 1  # the verified file was not fetched again
    assert not (tmp_path / "data.bin.part").exists()


@pytest.mark.bad_input
def test_fetch_resumes_after_a_cut_connection(tmp_path):
    served = Served(files={"/files/data.bin": PAYLOAD}, cut_after={"/files/data.bin": 30_000})
    with LocalServer(served) as url:
        with pytest.raises(DownloadError, match="resume"):
            fetch(_archive(url), tmp_path)
        assert not (tmp_path / "data.bin").exists()  # nothing incomplete under the final name
        assert (tmp_path / "data.bin.part").stat().st_size == 30_000
        path = fetch(_archive(url), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert served.requests[-1] == ("/files/data.bin", "bytes=30000-")


def test_fetch_starts_over_when_the_server_ignores_ranges(tmp_path):
    served = Served(files={"/files/data.bin": PAYLOAD}, ignore_ranges=True)
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes")
    with LocalServer(served) as url:
        assert fetch(_archive(url), tmp_path).read_bytes() == PAYLOAD


def test_a_complete_partial_file_is_verified_not_fetched_again(tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)  # killed between download and rename
    served = Served(files={"/files/data.bin": PAYLOAD})
    with LocalServer(served) as url:
        assert fetch(_archive(url), tmp_path).read_bytes() == PAYLOAD
    assert served.requests == [("/files/data.bin", f"bytes={len(PAYLOAD)}-")]


@pytest.mark.bad_input
def test_a_wrong_checksum_is_rejected_and_removed(tmp_path):
    served = Served(files={"/files/data.bin": PAYLOAD})
    with LocalServer(served) as url:
        archive = _archive(url, data=b"something else")
        with pytest.raises(DownloadError, match=f"{archive.url}: MD5 .* does not match"):
            fetch(archive, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.bad_input
def test_an_existing_file_with_a_wrong_checksum_is_an_error(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"corrupt")
    with pytest.raises(DownloadError, match=r"data\.bin: MD5 mismatch"):
        fetch(_archive("http://127.0.0.1:9"), tmp_path)


@pytest.mark.bad_input
def test_a_typo_in_the_md5_param_names_the_param_and_the_files_md5(tmp_path):
    """A good archive already there, and a typo in its MD5 param: the message says both, and
    the file (gigabytes to download again) is kept."""
    (tmp_path / "data.bin").write_bytes(PAYLOAD)
    typo = Archive("http://127.0.0.1:9/data.bin", "data.bin", "0" * 32, "data.coco2014.val_md5")
    actual = hashlib.md5(PAYLOAD).hexdigest()
    with pytest.raises(DownloadError, match=f"its MD5 is {actual}, data.coco2014.val_md5 says 0"):
        fetch(typo, tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


@pytest.mark.bad_input
def test_offline_names_the_url_and_where_to_put_the_file(tmp_path):
    served = Served()
    with LocalServer(served) as url:
        pass  # the server is gone: connection refused
    archive = _archive(url)
    with pytest.raises(DownloadError) as err:
        fetch(archive, tmp_path)
    message = str(err.value)
    assert archive.url in message and str(tmp_path / "data.bin") in message
    assert archive.md5 in message


@pytest.mark.bad_input
def test_http_errors_name_the_url(tmp_path):
    with LocalServer(Served()) as url, pytest.raises(DownloadError, match="HTTP 404"):
        fetch(_archive(url), tmp_path)


def _tar(tmp_path, members: dict[str, bytes], links: dict[str, str] = {}):  # noqa: B006
    path = tmp_path / "archive.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def test_extract_keeps_only_the_chosen_members(tmp_path):
    archive = _tar(tmp_path, {"a/x/1.txt": b"1", "a/y.txt": b"2", "a/xz/3.txt": b"3"})
    names = extract(archive, tmp_path / "out", under("a/x", "a/y.txt"))
    assert sorted(names) == ["a/x/1.txt", "a/y.txt"]
    assert (tmp_path / "out/a/x/1.txt").read_bytes() == b"1"
    assert not (tmp_path / "out/a/xz").exists()


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"ok.txt": b"1", "../evil.txt": b"2"}, {}),
        ({"ok.txt": b"1", "a/../../evil.txt": b"2"}, {}),
        ({"ok.txt": b"1", "/tmp/evil.txt": b"2"}, {}),
        ({"ok.txt": b"1"}, {"link": "../../etc/passwd"}),
    ],
)
def test_extract_refuses_members_that_leave_the_folder(tmp_path, members, links):
    archive = _tar(tmp_path, members, links)
    with pytest.raises(UnsafeArchiveError, match=r"archive\.tar\.gz"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.bad_input
def test_extract_reports_a_file_that_is_not_a_tar(tmp_path):
    path = tmp_path / "archive.tar"
    path.write_bytes(b"not a tar")
    with pytest.raises(DownloadError, match="not a readable tar archive"):
        extract(path, tmp_path / "out")


def _zip(tmp_path, members: dict[str, bytes], links: dict[str, str] | None = None):
    """A zip archive; a link is a member whose mode bits say symlink (as `zip -y` stores it)."""
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(zipfile.ZipInfo(name), data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return path


def test_extract_reads_zip_archives_too(tmp_path):
    archive = _zip(tmp_path, {"train2014/a.jpg": b"1", "train2014/b.jpg": b"2", "x.txt": b"3"})
    names = extract(archive, tmp_path / "out", lambda name: name == "train2014/b.jpg")
    assert names == ["train2014/b.jpg"]
    assert (tmp_path / "out/train2014/b.jpg").read_bytes() == b"2"
    assert not (tmp_path / "out/train2014/a.jpg").exists()


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"ok.txt": b"1", "../evil.txt": b"2"}, {}),
        ({"ok.txt": b"1", "a/../../evil.txt": b"2"}, {}),
        ({"ok.txt": b"1", "/tmp/evil.txt": b"2"}, {}),
        ({"ok.txt": b"1", "..\\evil.txt": b"2"}, {}),
        ({"ok.txt": b"1", "C:/evil.txt": b"2"}, {}),
        ({"ok.txt": b"1"}, {"link": "/etc/passwd"}),
    ],
)
def test_extract_refuses_zip_members_that_leave_the_folder_or_link(tmp_path, members, links):
    archive = _zip(tmp_path, members, links)
    with pytest.raises(UnsafeArchiveError, match=r"archive\.zip"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written


@pytest.mark.bad_input
def test_extract_reports_a_damaged_zip(tmp_path):
    archive = _zip(tmp_path, {"a.txt": b"x" * 1000})
    data = archive.read_bytes()
    archive.write_bytes(data[:30] + b"\0" * 40 + data[70:])  # the member's bytes overwritten
    with pytest.raises(DownloadError, match=r"archive\.zip: not a readable zip"):
        extract(archive, tmp_path / "out")


@pytest.mark.bad_input
def test_a_zip_member_that_inflates_like_a_bomb_is_refused_before_writing(tmp_path):
    """8 MiB of spaces deflate to about 8 KB: refused from the headers, nothing written."""
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("annotations/instances_train2014.json", b" " * (8 << 20))
    assert path.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match=r"instances_train2014\.json' inflates \d+ times"):
        extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_member_larger_than_any_real_one_is_refused_before_writing(tmp_path, kind, monkeypatch):
    """The limit lowered to 1 kB for the test: a 2 kB member stands for one of over 1 GiB."""
    monkeypatch.setattr("destseg.dataset.sources.download.MAX_MEMBER_BYTES", 1000)
    members = {"small.jpg": b"1", "train2014/big.jpg": bytes(range(256)) * 8}
    archive = _tar(tmp_path, members) if kind == "tar" else _zip(tmp_path, members)
    with pytest.raises(UnsafeArchiveError, match=r"big\.jpg' would extract to"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert extract(archive, tmp_path / "out", under("small.jpg")) == ["small.jpg"]  # not kept


@pytest.mark.bad_input
def test_a_full_disk_while_extracting_names_the_extraction_folder(tmp_path):
    """Files limited to 64 KiB (RLIMIT_FSIZE) stand for a full disk under the download folder:
    the error names where the extraction went, not the dataset it was for."""
    archive = _zip(tmp_path, {"big.bin": bytes(range(256)) * 1024})
    code = (
        "import resource, signal, sys; sys.path.insert(0, sys.argv[1]);"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from pathlib import Path\nfrom destseg.dataset.sources.download import extract\n"
        "extract(Path(sys.argv[2]), Path(sys.argv[3]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "src"), str(archive), str(tmp_path / "scratch")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    last = done.stderr.strip().splitlines()[-1]
    expected = f"OutputWriteError: {tmp_path / 'scratch'}: could not write (File too large)"
    assert last.endswith(expected)


def test_file_md5_read_in_chunks_is_the_md5_of_the_whole_file(tmp_path):
    data = bytes(range(256)) * 41  # 10,496 bytes: ten chunks of 1,000 and a partial one
    path = tmp_path / "archive.tar"
    path.write_bytes(data)
    assert file_md5(path, chunk=1000) == hashlib.md5(data).hexdigest()
    assert file_md5(path) == hashlib.md5(data).hexdigest()
