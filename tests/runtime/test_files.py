import signal
import subprocess
import sys

import pytest
from conftest import ROOT

from destseg.runtime.files import MARKER, OutputRefused, atomic_path, write_json


def test_atomic_file_is_absent_after_a_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def _own(folder, owner="t"):
    """A folder as stage ``owner`` left it."""
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(f"{owner}\n")
    return folder


def test_atomic_directory_replaces_the_old_one_whole(tmp_path):
    target = _own(tmp_path / "masks")
    (target / "stale.png").write_text("old")
    with atomic_path(target, directory=True, owner="t") as tmp:
        (tmp / "new.png").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.png"]
    assert (target / MARKER).read_text() == "t\n"
    assert [p.name for p in tmp_path.iterdir()] == ["masks"]  # no temporary, no lock left


def test_failed_directory_keeps_the_previous_output(tmp_path):
    target = _own(tmp_path / "masks")
    (target / "a.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, directory=True, owner="t") as tmp:
        (tmp / "b.png").write_text("partial")
        raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "a.png"]


def test_write_json(tmp_path):
    write_json(tmp_path / "m.json", {"miou": 0.5})
    assert (tmp_path / "m.json").read_text().strip().startswith("{")


@pytest.mark.bad_input
@pytest.mark.parametrize("directory", [False, True])
def test_a_killed_write_leaves_a_hidden_temporary_that_the_next_write_removes(tmp_path, directory):
    """kill -9 in the middle of writing: the output is untouched, the leftover is git-ignored,
    and the next write of the same output cleans it up."""
    target = tmp_path / ("cam" if directory else "model.pt")
    code = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[1]);"
        "from destseg.runtime.files import atomic_path\n"
        f"with atomic_path({str(target)!r}, directory={directory}, owner='t') as tmp:\n"
        f"    (tmp / 'a.npz' if {directory} else tmp).write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(ROOT / "src")], check=False)
    assert killed.returncode == -signal.SIGKILL
    leftover = tmp_path / f".{target.name}.tmp"
    assert leftover.exists() and not target.exists()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", f"data/{leftover.name}"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "git would show the leftover"
    with atomic_path(target, directory=directory, owner="t" if directory else None) as tmp:
        (tmp / "b.npz" if directory else tmp).write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    if directory:
        assert sorted(p.name for p in target.iterdir()) == [MARKER, "b.npz"]


@pytest.mark.bad_input
def test_a_leftover_of_an_interrupted_replace_is_removed(tmp_path):
    (tmp_path / ".masks.old").mkdir()  # killed between the two renames of a directory output
    (tmp_path / ".masks.old" / "x.png").write_text("stale")
    with atomic_path(tmp_path / "masks", directory=True, owner="t") as tmp:
        (tmp / "y.png").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


@pytest.mark.bad_input
def test_a_previous_output_left_without_its_name_survives_the_next_interrupted_write(tmp_path):
    """Killed between the renames: the previous CAMs under .cam.old, a complete .cam.tmp, no
    cam. The next write is interrupted in turn: the previous CAMs are back under their name."""
    _own(tmp_path / ".cam.old")
    (tmp_path / ".cam.old" / "a.npz").write_text("previous")
    _own(tmp_path / ".cam.tmp")
    (tmp_path / ".cam.tmp" / "a.npz").write_text("complete but never renamed")
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "cam", True, "t") as tmp:
        (tmp / "a.npz").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam"]
    assert (tmp_path / "cam" / "a.npz").read_text() == "previous"


def _write_under_a_file_size_limit(statement: str) -> subprocess.CompletedProcess:
    """Run ``statement`` in a Python whose files cannot grow past 64 KiB: writes fail with EFBIG
    (File too large) as they would with ENOSPC on a full disk."""
    code = (
        "import resource, signal, sys; sys.path.insert(0, sys.argv[1]);"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n" + statement
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "src")], capture_output=True, text=True, check=False
    )


WRITES = {
    "m.json": "from destseg.runtime.files import write_json\n"
    "write_json(TARGET, list(range(99999)))",
    "m.pt": "import torch\nfrom destseg.runtime import torch_files\n"
    "torch_files.save(torch.zeros(99999), TARGET)",
}


@pytest.mark.bad_input
@pytest.mark.parametrize(("name", "statement"), WRITES.items(), ids=["json", "torch"])
def test_a_write_that_the_storage_refuses_names_the_output(tmp_path, name, statement):
    target = tmp_path / name
    result = _write_under_a_file_size_limit(statement.replace("TARGET", repr(str(target))))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    error = "destseg.runtime.files.OutputWriteError"
    assert last == f"{error}: {target}: could not write (File too large)"
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary


def test_empty_directory_replaces_a_folder_and_creates_a_missing_one(tmp_path):
    from destseg.runtime.files import empty_directory

    (_own(tmp_path / "out") / "stale.pt").write_text("old")
    empty_directory(tmp_path / "out", "t")
    empty_directory(tmp_path / "new" / "plots", "t")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [MARKER]
    assert (tmp_path / "new" / "plots").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]  # no temporary left



@pytest.mark.bad_input
@pytest.mark.parametrize("owner", [None, "gallery"])
def test_a_folder_the_stage_did_not_write_is_never_replaced(tmp_path, owner):
    """--out pointed at a folder of notes (no marker) or at another stage's output."""
    notes = _own(tmp_path / "notes", owner) if owner else tmp_path / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "thesis.tex").write_text("years of work")
    refused = pytest.raises(OutputRefused, match="make_cam stage replaces only its own")
    with refused as err, atomic_path(notes, directory=True, owner="make_cam"):
        pytest.fail("the block must not run")
    assert str(err.value).startswith(str(notes))
    assert (notes / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_an_empty_folder_is_taken(tmp_path):
    (tmp_path / "cam").mkdir()
    with atomic_path(tmp_path / "cam", directory=True, owner="make_cam") as tmp:
        (tmp / "a.npz").write_text("x")
    assert (tmp_path / "cam" / "a.npz").is_file()


@pytest.mark.bad_input
def test_a_file_where_a_folder_goes_and_a_folder_where_a_file_goes_are_refused(tmp_path):
    (tmp_path / "gallery").write_text("a file of the user's")
    refused = pytest.raises(OutputRefused, match="an existing file; this output is a folder")
    with refused, atomic_path(tmp_path / "gallery", directory=True, owner="gallery"):
        pass
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OutputRefused, match="a folder; this output is a file"):
        write_json(tmp_path / "metrics.json", {})
    assert (tmp_path / "gallery").read_text() == "a file of the user's"


def test_a_linked_output_folder_is_written_through_the_link(tmp_path):
    disk = _own(tmp_path / "big_disk" / "cam")
    (disk / "stale.npz").write_text("old")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cam").symlink_to(disk)
    with atomic_path(tmp_path / "data" / "cam", directory=True, owner="t") as tmp:
        (tmp / "new.npz").write_text("new")
    assert (tmp_path / "data" / "cam").is_symlink()
    assert sorted(p.name for p in disk.iterdir()) == [MARKER, "new.npz"]


@pytest.mark.bad_input
def test_a_second_run_on_the_same_folder_fails_at_once_and_leaves_the_first_whole(tmp_path):
    target = tmp_path / "cam"
    with atomic_path(target, directory=True, owner="t") as tmp:
        (tmp / "a.npz").write_text("first")
        refused = pytest.raises(OutputRefused, match="another run is writing it")
        with refused, atomic_path(target, directory=True, owner="t"):
            pytest.fail("the second run must not start")
        (tmp / "b.npz").write_text("first")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "a.npz", "b.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam"]  # the lock is gone
    with atomic_path(target, directory=True, owner="t") as tmp:  # and the next run may write
        (tmp / "c.npz").write_text("second")


def test_outputs_written_together_are_swapped_in_together(tmp_path):
    """A failure in the last output keeps every previous output; success swaps in all."""
    from destseg.runtime.files import outputs_together

    folder = _own(tmp_path / "cam")
    (folder / "a.npz").write_text("previous")
    write_json(tmp_path / "m.json", {"miou": 0.1})
    with pytest.raises(OSError), outputs_together():
        with atomic_path(folder, directory=True, owner="t") as tmp:
            (tmp / "a.npz").write_text("new")
        assert (folder / "a.npz").read_text() == "previous"  # not yet swapped in
        raise OSError("the metrics could not be written")
    assert (folder / "a.npz").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam", "m.json"]
    with outputs_together():
        with atomic_path(folder, directory=True, owner="t") as tmp:
            (tmp / "a.npz").write_text("new")
        write_json(tmp_path / "m.json", {"miou": 0.2})
    assert (folder / "a.npz").read_text() == "new"
    assert '"miou": 0.2' in (tmp_path / "m.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam", "m.json"]


def test_a_file_inside_a_folder_being_written_is_in_place_at_once(tmp_path):
    """Among outputs swapped in together, the files written into another output's temporary
    folder (one CAM file per image) are renamed when written, not at the end: a torchrun
    worker's own files would otherwise be renamed after the main process had moved the folder
    (make_cam in two processes failed so, now and then, under load)."""
    from destseg.runtime.files import outputs_together

    with outputs_together():
        with atomic_path(tmp_path / "cam", directory=True, owner="t") as folder:
            with atomic_path(folder / "a.npz") as tmp:
                tmp.write_text("cam")
            assert sorted(p.name for p in folder.iterdir()) == [MARKER, "a.npz"]
        write_json(tmp_path / "m.json", {})
        assert not (tmp_path / "cam").exists()  # the folder itself still waits
    assert (tmp_path / "cam" / "a.npz").read_text() == "cam"
