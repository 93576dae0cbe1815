"""harness.outdir: one run per output folder (the lock), and the scan's own names."""

from __future__ import annotations

import os
import re

import pytest

from harness.errors import ConfigError, FolderInUse, OutputError
from harness.outdir import LOCK_FILE, RESERVED_NAMES, RUN_FILES, STAGING, hold_output_folder, os_reason


def test_the_lock_holds_the_folder_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "a" / "b"
    with hold_output_folder(str(out)):
        text = (out / LOCK_FILE).read_text()
        assert text.startswith("pid ") and ", started 20" in text
        with pytest.raises(FolderInUse, match=rf"^output folder {out} is in use by another run \(pid "):
            with hold_output_folder(str(out)):
                pass
        assert (out / LOCK_FILE).exists(), "the refused second holder removed nothing"
    assert not (tmp_path / "a").exists(), "the lock file and the folders made for it are gone"


def test_a_folder_that_holds_other_files_stays(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with hold_output_folder(str(tmp_path / "out")):
        pass
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_an_unwritable_place_is_one_output_error(tmp_path):
    (tmp_path / "file").write_text("x")
    # (the CLI refuses such an out_dir before this: tests/test_output_folder.py)
    with pytest.raises(OutputError, match=rf"^cannot write {tmp_path / 'file' / 'out'}: Not a directory; "
                                          "nothing was written$"):
        with hold_output_folder(str(tmp_path / "file" / "out")):
            pass


def test_the_scans_own_names():
    assert set(RUN_FILES) < set(RESERVED_NAMES) and LOCK_FILE in RESERVED_NAMES and STAGING in RESERVED_NAMES
    assert os_reason(OSError(28, "ignored")) == "No space left on device"


def _planted(out, kind: str, victim):
    """A lock path that is not a lock file of ours: a symlink to `victim` (or a dangling one), a
    hard link to it, a folder or a FIFO."""
    lock = out / LOCK_FILE
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling symlink":
        lock.symlink_to(out / "nothing-here")
    elif kind == "hard link":
        os.link(victim, lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    return lock


@pytest.mark.parametrize("kind, what", [
    ("symlink", "a symlink to {victim}"), ("dangling symlink", "a symlink to {out}/nothing-here"),
    ("hard link", "a file with 2 hard links"), ("folder", "a folder"), ("fifo", "not a regular file")])
def test_a_lock_path_that_is_not_our_lock_file_is_refused_and_left_alone(tmp_path, kind, what):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("someone's precious file\n")
    lock = _planted(out, kind, victim)
    before = os.lstat(lock)
    message = (f"config key 'out_dir': {lock} is {what.format(victim=victim, out=out)}, not this tool's lock "
               "file; it is left alone: remove it and run again")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        with hold_output_folder(str(out)):
            pytest.fail("the block must not run")
    assert victim.read_text() == "someone's precious file\n", "the file the link names is intact"
    after = os.lstat(lock)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), "the planted entry is still there"
    assert not (out / "nothing-here").exists()


def test_the_lock_file_replaced_during_the_run_is_not_removed(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    with hold_output_folder(str(out)):
        (out / LOCK_FILE).unlink()
        (out / LOCK_FILE).symlink_to(victim)  # planted while the run holds the folder
    assert (out / LOCK_FILE).is_symlink() and victim.read_text() == "keep me\n"
