"""harness.outdir: one run per output folder (the lock), and the scan's own names."""

from __future__ import annotations

import pytest

from harness.errors import FolderInUse, OutputError
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
