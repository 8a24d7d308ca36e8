"""destseg.runtime.pace: the pace of a stage in a log file."""

import re

import pytest

from destseg.runtime.pace import EpochClock, duration, paced


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (41.4, "41 s"), (59.6, "1 min 0 s"), (369, "6 min 9 s"), (7500, "2 h 5 min")],
)
def test_a_duration_reads_as_a_wait(seconds, text):
    assert duration(seconds) == text


def test_the_time_left_is_the_mean_epoch_times_the_epochs_left():
    clock = EpochClock(epochs=4, images=100)
    assert clock.lap(0, 10.0) == "10 s, 10.0 images/s, 30 s left"
    assert clock.lap(1, 20.0) == "20 s, 5.0 images/s, 30 s left"  # mean 15 s, 2 epochs left
    assert clock.lap(3, 15.0).endswith("0 s left")  # the last epoch (a resumed run skips some)


def test_outside_a_terminal_the_items_come_with_a_line_every_tenth(capsys):
    items = paced(range(20), 20, "make_cam", unit="batches", every=0)
    assert list(items) == list(range(20))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10  # 2, 4, ..., 18 of 20, then the whole time
    assert re.fullmatch(r"make_cam: 2/20 batches, [\d.]+/s, \d+ s left", lines[0])
    assert re.fullmatch(r"make_cam: 20 batches in \d+ s, [\d.]+/s", lines[-1])


def test_a_quick_loop_prints_its_whole_time_alone(capsys):
    assert list(paced(range(20), 20, "evaluate")) == list(range(20))  # far under 30 s
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("evaluate: 20 images in ")


def test_quiet_or_empty_prints_nothing(capsys):
    assert list(paced(range(5), 5, "evaluate", quiet=True)) == list(range(5))
    assert list(paced([], 0, "evaluate")) == []
    assert capsys.readouterr().out == ""
