"""The collector never writes into a share: no new files, no changed mtimes or ctimes, no write-mode opens, and
it works on a tree it could not write to (tests run as root, so the unwritable run drops root's capabilities)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.health.bundles import DAY, T0, tree_state
from timemachine.health.assess import findings
from timemachine.health.collector import collect, discover_shares
from timemachine.health.metrics import render
from timemachine.health.report import html_report, text_report

ROOT = Path(__file__).resolve().parents[3]

# Run in a child: an audit hook records every open for writing and every call that changes a file...
AUDIT_HOOK = r"""
import json, os, sys
writes = []
MUTATING = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.utime", "os.chmod", "os.chown", "os.link",
            "os.symlink", "os.truncate", "os.setxattr", "os.removexattr", "shutil.copyfile", "shutil.rmtree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if (mode is not None and any(c in str(mode) for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
            writes.append([event, str(path)])
    elif event in MUTATING:
        writes.append([event, repr(args)])
sys.addaudithook(hook)
"""
# ...then the collector, the exposition and both reports run over the tree given as argv[1].
COLLECT = r"""
from timemachine.health.collector import collect, discover_shares
from timemachine.health.metrics import render
from timemachine.health.report import html_report, text_report
root = os.path.realpath(sys.argv[1])
snapshot = collect(root, discover_shares(root), float(sys.argv[2]))
render(snapshot), text_report(snapshot), html_report(snapshot)
problems = [p for b in snapshot.bundles for p in b.problems] + [p for s in snapshot.shares for p in s.problems]
print(json.dumps({"writes": writes, "problems": problems, "bundles": len(snapshot.bundles)}))
"""
DROP_CAPABILITIES = ["--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]


def run_everything(root: Path) -> None:
    snapshot = collect(str(root), discover_shares(str(root)), T0 + 4 * DAY)
    render(snapshot), text_report(snapshot), html_report(snapshot), findings(snapshot)


def test_collecting_changes_nothing(storage: Path) -> None:
    before = tree_state(storage)
    run_everything(storage)
    run_everything(storage)
    assert tree_state(storage) == before, "same paths, sizes, modes, mtimes and ctimes"


@pytest.fixture
def unwritable(storage: Path) -> Iterator[Path]:
    """A copy of the storage fixture in a directory anyone may traverse, with every write bit cleared."""
    base = Path(tempfile.mkdtemp(prefix="health-ro-"))
    base.chmod(0o755)
    root = base / "storage"
    shutil.copytree(storage, root, symlinks=True)
    for directory, _dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(directory, name), 0o444)
        os.chmod(directory, 0o555)
    yield root
    for directory, _, _ in os.walk(root):
        os.chmod(directory, 0o755)
    shutil.rmtree(base)


def test_no_open_for_writing_and_nothing_written_without_root_powers(unwritable: Path) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's capabilities: apt-get install util-linux"
    before = tree_state(unwritable)
    # Without CAP_DAC_OVERRIDE and CAP_FOWNER root is bound by the mode bits, like a read-only mount.
    command = [setpriv, *DROP_CAPABILITIES, sys.executable, "-B", "-c", AUDIT_HOOK + COLLECT]
    command += [str(unwritable), str(T0 + 4 * DAY)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["writes"] == []
    assert result["bundles"] == 7
    # The only problems are the fixture's damaged plists: nothing was refused for lack of write access.
    assert all("damaged" in p for p in result["problems"]), result["problems"]
    assert tree_state(unwritable) == before


def test_dropping_capabilities_really_makes_the_tree_unwritable(unwritable: Path) -> None:
    # A control for the test above: the same child cannot create a file in the tree.
    probe = f"open({str(unwritable / 'alice' / 'probe')!r}, 'x')"
    done = subprocess.run(["setpriv", *DROP_CAPABILITIES, sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode != 0 and "PermissionError" in done.stderr
    assert stat.S_IMODE(os.stat(unwritable / "alice").st_mode) == 0o555


def test_the_audit_hook_sees_writes(tmp_path: Path) -> None:
    # A control for the test above: the hook records the kinds of write it is there to catch.
    writer = f"open({str(tmp_path / 'a')!r}, 'w').close(); os.utime({str(tmp_path / 'a')!r}); print(json.dumps(writes))"
    done = subprocess.run([sys.executable, "-c", AUDIT_HOOK + writer], capture_output=True, text=True, check=True)
    assert [event for event, _ in json.loads(done.stdout)] == ["open", "os.utime"]
