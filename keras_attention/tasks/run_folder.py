"""A run folder (what `fit` and `tune` write), never half old, half new.

The artefacts of a run (`model.keras`, `export/`, `metrics.json`,
`history.csv`, `vocabulary.txt`, `attention/`) are first written into
`.pending/` inside the folder and checked. Then a marker,
`.pending/COMMITTED`, is written atomically; from that moment the new run
counts as written, and the artefacts are moved into place one by one with
`os.replace`. A process killed at any point leaves a folder that
`RunFolder.recover` turns into either the old complete run (no marker: the
pending files are dropped) or the new complete one (marker: the moves are
finished). Every command that reads or writes a run folder recovers it
first.

Nothing is written through a symbolic link inside a run folder: a link in
the place of an artefact is refused with a clear error.
"""

import json
import os
import shutil
import tempfile


class RunFolderError(ValueError):
    """A run folder that cannot be written safely (e.g. a link inside it);
    the message says what to do."""


ARTEFACTS = (
    "model.keras",
    "export",
    "history.csv",
    "vocabulary.txt",
    "attention",
    "metrics.json",  # last: a folder with metrics.json holds a finished run
)
PENDING = ".pending"
BACKUP = "backup"
_MARKER = "COMMITTED"


def atomic_write_text(path, text):
    """Writes `text` to `path` through a temporary file in the same folder
    and `os.replace`: readers see the old content or the new, never a part.
    """
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2))


def _remove(path):
    """Removes a file, a link (not what it points to) or a folder tree."""
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def replace(source, target):
    """Moves `source` to `target`, replacing what is there (files and
    folders alike); a folder being replaced is set aside first, so `target`
    is at each moment the old one or the new one (or, for an instant
    between two renames, absent, which `RunFolder.recover` repairs)."""
    folders = os.path.isdir(source) or os.path.isdir(target)
    if folders and os.path.lexists(target) and not os.path.islink(target):
        aside = target.rstrip(os.sep) + ".old"
        _remove(aside)
        os.rename(target, aside)
        os.rename(source, target)
        _remove(aside)
    else:
        os.replace(source, target)


def refuse_links(folder, names, command):
    """Raises `RunFolderError` when one of `folder/name` is a symbolic link."""
    for name in names:
        path = os.path.join(folder, name)
        if os.path.islink(path):
            raise RunFolderError(
                f"{path!r} is a symbolic link (to {os.readlink(path)!r}); "
                f"`keras-attention {command}` never writes through links in a "
                "run folder. Remove the link or choose another --output."
            )


class RunFolder:
    """The output folder of a `fit` run (or of `tune`'s best model).

    Args:
        path: str, the folder.
        command: str, the command writing it (for error messages).
    """

    def __init__(self, path, command="fit"):
        self.path = path
        self.command = command

    @property
    def backup(self):
        return os.path.join(self.path, BACKUP)

    @property
    def pending(self):
        return os.path.join(self.path, PENDING)

    def check_links(self):
        """Refuses links in the place of the artefacts, `backup/`, `.pending/`."""
        refuse_links(self.path, ARTEFACTS + (BACKUP, PENDING), self.command)
        for name in ARTEFACTS + (BACKUP, PENDING):
            aside = os.path.join(self.path, name + ".old")
            if os.path.islink(aside):
                refuse_links(self.path, (name + ".old",), self.command)

    def recover(self):
        """Finishes or drops an interrupted commit (see the module docstring).

        Returns `"committed"`, `"dropped"` or `None` (nothing to do).
        """
        if not os.path.isdir(self.path):
            return None
        for name in ARTEFACTS:
            aside = os.path.join(self.path, name + ".old")
            target = os.path.join(self.path, name)
            if os.path.isdir(aside) and not os.path.islink(aside):
                if os.path.exists(target):
                    _remove(aside)  # the new one is in place
                elif not os.path.exists(os.path.join(self.pending, name)):
                    os.rename(aside, target)  # no new one: keep the old
        if os.path.islink(self.pending) or not os.path.isdir(self.pending):
            return None
        marker = os.path.join(self.pending, _MARKER)
        if not os.path.exists(marker):
            _remove(self.pending)
            return "dropped"
        self._finish(marker)
        return "committed"

    def finished(self):
        """Whether the folder holds a finished run (its `metrics.json`)."""
        return os.path.isfile(os.path.join(self.path, "metrics.json"))

    def occupied(self):
        """The artefact names present in the folder."""
        return [n for n in ARTEFACTS if os.path.lexists(os.path.join(self.path, n))]

    def stage(self):
        """A fresh, empty `.pending/` folder to write the new artefacts into."""
        self.check_links()
        os.makedirs(self.path, exist_ok=True)
        _remove(self.pending)
        os.makedirs(self.pending)
        return self.pending

    def commit(self, remove_backup=True):
        """Puts the staged artefacts in place of the old ones.

        Artefacts of the old run that the new one does not have (e.g.
        `export/` after `--no-export`) are removed, so the folder never
        mixes two runs. With `remove_backup`, the training checkpoint goes
        too, as the last step before `.pending/` itself.
        """
        self.check_links()
        names = [n for n in ARTEFACTS if os.path.lexists(os.path.join(self.pending, n))]
        marker = os.path.join(self.pending, _MARKER)
        atomic_write_json(marker, {"artefacts": names, "remove_backup": bool(remove_backup)})
        self._finish(marker)

    def _finish(self, marker):
        with open(marker, encoding="utf-8") as f:
            plan = json.load(f)
        for name in ARTEFACTS:
            staged = os.path.join(self.pending, name)
            target = os.path.join(self.path, name)
            if os.path.lexists(staged):
                replace(staged, target)
            elif name not in plan["artefacts"] and os.path.lexists(target):
                _remove(target)
            _remove(target + ".old")  # set aside by an interrupted `replace`
        if plan.get("remove_backup") and os.path.lexists(self.backup):
            _remove(self.backup)
        _remove(self.pending)
