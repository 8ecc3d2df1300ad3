"""The runner never loses a result, explains every error in one line, leaves no orphans.

* ``run --out`` into a folder that holds a run is refused without ``--force``; with it
  the folder is replaced as a whole, and only by a successful run;
* a bad ``--out`` (a file, a read-only folder), a malformed grid file: one line
  ``error: ...``, exit status 2, no traceback (``--debug`` shows it);
* ``--help`` of every subcommand shows its defaults;
* a configuration another live process is running is not run again (its lock);
* ``kill -9`` on a sweep leaves no worker process behind (checked in ``/proc``).

About ten kernel starts in all (one to three seconds each).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from tdml_lib import __main__ as cli
from tdml_lib import io as tdml_io
from tdml_lib import runner

from test_runner import executions, write_notebook

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "book" / "01_tiny.ipynb")


def stored_run(folder: Path) -> dict[str, str]:
    """A folder that holds a previous run (files and their contents)."""
    folder.mkdir(parents=True)
    files = {"result.json": json.dumps({"status": "ok", "metrics": {"value": -1}}),
             "metrics.json": "{}", "01_tiny.ipynb": "{}", "figure.png": "png"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------- output folders (issue 21)

def test_a_folder_holding_a_run_is_not_overwritten_without_force(tiny: Path, tmp_path: Path,
                                                                 capsys) -> None:
    out = tmp_path / "results" / "exp"
    before = stored_run(out)
    with pytest.raises(ValueError, match=r"not empty \(it holds 01_tiny.ipynb, figure.png, "
                                         r"metrics.json, result.json\); pass --force"):
        runner.run_chapter(tiny, out_dir=out, progress=False)
    code, _, err = run_cli(capsys, "run", str(tiny), "--out", str(out), "-q")
    assert code == 2 and "pass --force" in one_line_error(err)
    assert contents(out) == before and executions(tiny) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["exp"]  # no lock, no leftovers


def test_force_replaces_the_folder_as_a_whole_after_success(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "exp"
    stored_run(out)
    rec = runner.run_chapter(tiny, {"N": 5}, out_dir=out, progress=False, force=True)
    assert rec.ok and rec.out_dir == out.resolve()
    # the old folder is gone as a whole: no stale figure or metrics from the previous run
    assert sorted(contents(out)) == ["01_tiny.ipynb", "metrics.json", "result.json"]
    assert json.loads((out / "result.json").read_text())["metrics"]["value"] == 2.5
    assert sorted(p.name for p in out.parent.iterdir()) == ["exp"]


def test_a_failed_run_never_replaces_a_successful_one(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "exp"
    before = stored_run(out)
    rec = runner.run_chapter(tiny, {"NAME": "boom"}, out_dir=out, progress=False, force=True)
    assert rec.status == "failed" and "asked to fail" in rec.error
    assert contents(out) == before  # untouched
    kept = out.parent / ".exp.failed"
    assert rec.out_dir == kept.resolve() and str(kept.resolve()) in rec.error
    assert json.loads((kept / "result.json").read_text())["status"] == "failed"
    # results readers ignore the hidden folder
    from tdml_lib import reference

    assert list(reference.load_results(out.parent)) == ["exp"]


def test_an_output_that_is_a_file_is_a_one_line_error(tiny: Path, tmp_path: Path,
                                                      capsys) -> None:
    target = tmp_path / "result.json"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, "run", str(tiny), "--out", str(target), "-q")
    assert code == 2 and "is an existing file, not a folder" in one_line_error(err)
    assert target.read_text() == "keep me" and executions(tiny) == []


def test_a_read_only_output_folder_is_a_one_line_error(tiny: Path, tmp_path: Path) -> None:
    """As a user, a folder without write permission; as root (who may write anywhere),
    a read-only file system mounted in a private mount namespace."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    command = [sys.executable, "-m", "tdml_lib", "run", str(tiny), "--out",
               str(folder / "exp"), "-q"]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root ignores permissions and `unshare` is missing")
        probe = subprocess.run(["unshare", "-m", "sh", "-c",
                                f"mount -t tmpfs -o ro tmpfs {folder}"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("root ignores permissions and no read-only mount is allowed here")
        command = ["unshare", "-m", "sh", "-c",
                   f'mount -t tmpfs -o ro tmpfs "{folder}" && exec "$@"', "sh", *command]
    else:
        folder.chmod(0o555)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 2, done.stderr
    line = one_line_error(done.stderr)
    assert f"cannot write in {folder}" in line and ("Read-only" in line or "Permission" in line)
    assert executions(tiny) == [] and list(folder.iterdir()) == []


def test_a_folder_another_process_writes_is_refused(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    with tdml_io.exclusive_lock(tmp_path / ".exp.lock"):
        with pytest.raises(tdml_io.LockBusy, match="is writing .*exp right now"):
            runner.run_chapter(tiny, out_dir=out, progress=False)
    assert not out.exists() and executions(tiny) == []


# ------------------------------------------------------------------- CLI errors and help

def test_a_malformed_grid_file_is_a_one_line_error(tiny: Path, tmp_path: Path, capsys) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {N: [1, 2]\nconfigurations: [\n")
    code, _, err = run_cli(capsys, "sweep", str(tiny), "--grid", str(grid), "-q")
    assert code == 2
    assert re.search(r"is not valid YAML at line \d+, column \d+", one_line_error(err))
    code, _, err = run_cli(capsys, "sweep", str(tiny), "--grid", str(tmp_path / "no.yaml"))
    assert code == 2 and "grid file" in one_line_error(err) and "does not exist" in err
    assert executions(tiny) == [] and not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        cli.main(["run", str(tiny), "--out", str(tmp_path / "file"), "--debug"])


def test_every_default_shows_in_help() -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"run", "sweep", "reproduce", "data", "bench"} <= set(subparsers.choices)
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        for action in sub._actions:
            shown = action.option_strings or action.nargs in ("?", "*")
            if shown and action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in (action.help or "").lower(), (name, action.dest)
                assert str(action.default).split("/")[0][:8] in " ".join(text.split()), \
                    (name, action.dest)
    run_help = " ".join(subparsers.choices["run"].format_help().split())
    assert "default: runs/<chapter>/<UTC time>-<hash>" in run_help
    assert "--force" in run_help and "(default: python3)" in run_help


# ------------------------------------------------------------------------------ sweeps

def test_a_resumed_sweep_leaves_a_running_configuration_alone(tiny: Path,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    root.mkdir()
    defaults = runner.read_parameters(tiny)
    busy_key = runner.config_hash({**defaults, "N": 1})
    with tdml_io.exclusive_lock(root / f".{busy_key}.lock"):  # "another live process"
        with ThreadPoolExecutor(1) as pool:
            records = runner.sweep(tiny, {"N": [1, 2]}, root, executor=pool, progress=False)
    assert [r.status for r in records] == ["busy", "ok"]
    assert "is writing" in records[0].error
    assert executions(tiny) == ["a 2 0.5"]  # N=1 never ran here
    assert not (root / busy_key).exists()   # and nothing was written into its folder
    index = json.loads((root / "sweep.json").read_text())
    assert [r["status"] for r in index["runs"]] == ["busy", "ok"]


SLEEPER = """\
import os, time
from pathlib import Path
if MARK:
    Path(MARK).write_text(f"{os.getpid()} {os.getppid()}")  # kernel, and the worker running it
time.sleep(SECONDS)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from ``/proc``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_on_a_sweep_leaves_no_worker_behind(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "book" / "01_sleep.ipynb",
                        params_source='SECONDS = 0\nMARK = ""\nRESULTS_DIR = None')
    book = nbformat.read(str(nb), as_version=4)
    book.cells[-1] = nbformat.v4.new_code_cell(SLEEPER)
    nbformat.write(book, str(nb))
    mark = tmp_path / "mark"
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"configurations": [{"SECONDS": 300, "MARK": str(mark)}]}))
    sweep = subprocess.Popen([sys.executable, "-m", "tdml_lib", "sweep", str(nb), "--grid",
                              str(grid), "--out", str(tmp_path / "sweep"), "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    survivors: list[int] = []
    try:
        deadline = time.monotonic() + 150
        while not mark.exists() or not mark.read_text():
            assert sweep.poll() is None, "the sweep ended before its kernel started"
            assert time.monotonic() < deadline, "the kernel never started"
            time.sleep(0.2)
        kernel, worker = map(int, mark.read_text().split())
        workers = children(sweep.pid)  # every pool worker, busy or idle
        assert worker in workers
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        deadline = time.monotonic() + 20
        while any(map(alive, [*workers, kernel])) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [pid for pid in [*workers, kernel] if alive(pid)]
        assert not survivors, f"still running after kill -9 of the sweep: {survivors}"
    finally:
        if sweep.poll() is None:
            sweep.kill()
        for pid in survivors:  # do not leave them running after a failure
            os.kill(pid, signal.SIGKILL)

