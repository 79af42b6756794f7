"""The grid's MLflow recorder and Ctrl-C: a signal during a write lands after it."""

import os
import signal
import time

import pytest

from raycell.core.tracking import uninterrupted


def test_ctrl_c_during_a_recorder_write_lands_once_the_write_is_done():
    done = []

    @uninterrupted
    def write():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # time for the handler to run: here it only takes note
        done.append("whole")

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        write()
    assert done == ["whole"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back


def test_without_ctrl_c_a_write_returns_its_value():
    assert uninterrupted(lambda: 7)() == 7
