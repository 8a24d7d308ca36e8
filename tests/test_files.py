import pytest

from destseg.files import atomic_path, write_json


def test_atomic_file_is_absent_after_a_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "masks"
    target.mkdir()
    (target / "stale.png").write_text("old")
    with atomic_path(target, directory=True) as tmp:
        (tmp / "new.png").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["masks"]


def test_failed_directory_keeps_the_previous_output(tmp_path):
    target = tmp_path / "masks"
    target.mkdir()
    (target / "a.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, directory=True) as tmp:
        (tmp / "b.png").write_text("partial")
        raise RuntimeError
    assert [p.name for p in target.iterdir()] == ["a.png"]


def test_write_json(tmp_path):
    write_json(tmp_path / "m.json", {"miou": 0.5})
    assert (tmp_path / "m.json").read_text().strip().startswith("{")
