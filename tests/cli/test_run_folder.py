"""`RunFolder`: a folder holds the old complete run or the new one, at
every point a commit can be interrupted (pure file operations, no model)."""

import json
import os

import pytest

from keras_attention.tasks import run_folder
from keras_attention.tasks.run_folder import RunFolder
from keras_attention.tasks.run_folder import RunFolderError


def write_run(folder, tag, names=("model.keras", "metrics.json", "history.csv")):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "w") as f:
            f.write(tag)
    os.makedirs(os.path.join(folder, "export"), exist_ok=True)
    with open(os.path.join(folder, "export", "saved_model.pb"), "w") as f:
        f.write(tag)


def contents(folder):
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in (".pending", "backup")]
        for name in files:
            path = os.path.join(root, name)
            with open(path) as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


OLD = {"model.keras": "old", "metrics.json": "old", "history.csv": "old", "export/saved_model.pb": "old"}
NEW = {"model.keras": "new", "metrics.json": "new", "history.csv": "new", "export/saved_model.pb": "new"}


def staged(tmp_path):
    path = str(tmp_path / "run")
    write_run(path, "old")
    folder = RunFolder(path)
    write_run(folder.stage(), "new")
    return folder


def test_commit_replaces_the_whole_run_and_the_backup(tmp_path):
    folder = staged(tmp_path)
    os.makedirs(folder.backup)
    assert contents(folder.path) == OLD  # staging leaves the old run whole
    folder.commit()
    assert contents(folder.path) == NEW
    assert sorted(os.listdir(folder.path)) == ["export", "history.csv", "metrics.json", "model.keras"]


def test_artefacts_the_new_run_lacks_are_removed(tmp_path):
    path = str(tmp_path / "run")
    write_run(path, "old", names=("model.keras", "metrics.json", "vocabulary.txt"))
    folder = RunFolder(path)
    staging = folder.stage()
    for name in ("model.keras", "metrics.json"):
        with open(os.path.join(staging, name), "w") as f:
            f.write("new")
    folder.commit()
    assert contents(path) == {"model.keras": "new", "metrics.json": "new"}


def test_interrupted_before_the_marker_keeps_the_old_run(tmp_path):
    folder = staged(tmp_path)  # killed while staging: no marker
    assert folder.recover() == "dropped"
    assert contents(folder.path) == OLD
    assert not os.path.exists(folder.pending)


@pytest.mark.parametrize("moved", [0, 1, 2, 3])
@pytest.mark.parametrize("aside", [False, True])
def test_interrupted_after_the_marker_finishes_the_new_run(tmp_path, moved, aside):
    folder = staged(tmp_path)
    marker = os.path.join(folder.pending, "COMMITTED")
    names = ["model.keras", "export", "history.csv", "metrics.json"]
    run_folder.atomic_write_json(marker, {"artefacts": names, "remove_backup": True})
    # Killed after `moved` artefacts went into place (ARTEFACTS order).
    for name in [n for n in run_folder.ARTEFACTS if n in names][:moved]:
        run_folder.replace(os.path.join(folder.pending, name), os.path.join(folder.path, name))
    if aside and moved == 0:
        # Killed between the two renames of a folder: the old export/ set
        # aside, the new one not yet in place.
        os.rename(os.path.join(folder.path, "export"), os.path.join(folder.path, "export.old"))
    assert folder.recover() == "committed"
    assert contents(folder.path) == NEW
    assert not os.path.exists(os.path.join(folder.path, "export.old"))


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.json")
    run_folder.atomic_write_json(path, {"a": 1})

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        run_folder.atomic_write_json(path, {"a": 2})
    with open(path) as f:
        assert json.load(f) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary left


def test_links_are_refused(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (tmp_path / "outside").write_text("x")
    os.symlink(tmp_path / "outside", path / "metrics.json")
    with pytest.raises(RunFolderError, match="symbolic link"):
        RunFolder(str(path)).check_links()
