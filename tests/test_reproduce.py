"""The stored experiments: their registry, whether a result is current, and ``reproduce``.

``reproduce`` is tested with tiny notebooks on a temporary results folder (each run is a
``python -m tdml_lib run`` child process, a few seconds); the full-scale experiments
of the registry are only checked against their chapters' parameters, never run.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tdml_lib import __main__ as cli
from tdml_lib import io as tdml_io
from tdml_lib import reference, runner
from tdml_lib.runner.registry import CURRENT, StoredExperiment, freshness

from test_runner import write_notebook
from test_runner_safety import alive

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
# the module (tdml_lib.runner.reproduce is the function it exports)
reproduce_module = importlib.import_module("tdml_lib.runner.reproduce")


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "book" / "01_tiny.ipynb")


# -------------------------------------------------------------------------- registry

def test_registry_parameters_exist_in_their_chapters() -> None:
    """Every stored experiment's parameters are valid for its chapter now (a renamed
    parameter fails here, not hours into `make results`)."""
    names = [e.name for e in runner.STORED_EXPERIMENTS]
    assert len(names) == len(set(names))
    assert {"transfer", "clustering", "baseline_spc", "baseline_udml"} <= set(names)
    parser = cli.build_parser()
    for exp in runner.STORED_EXPERIMENTS:
        if exp.kind == "chapter":
            defaults = runner.read_parameters(runner.resolve_chapter(exp.chapter))
            runner.validate_overrides(defaults, exp.params)
        args = parser.parse_args(exp.argv(f"results/{exp.name}"))
        assert callable(args.func), exp.name
    assert [e["experiment"] for e in reference.EXPERIMENTS] == [
        e.name for e in runner.STORED_EXPERIMENTS if e.kind == "chapter"]


def test_registry_commands_are_the_stored_ones() -> None:
    exp = runner.stored_experiment("baseline_udml")
    assert exp.argv("results/baseline_udml") == [
        "run", "07_cbswr", "-p", "SPLIT", "all", "-p", "N_IMAGES", "70000", "-p",
        "PRETRAIN_EPOCHS", "5", "-p", "EPOCHS", "10", "--out", "results/baseline_udml"]
    with pytest.raises(ValueError, match="no stored experiment 'nope'; stored experiments: "
                                         "transfer, clustering"):
        runner.stored_experiment("nope")


def test_reproduce_page_lists_the_registry_s_commands() -> None:
    """book/reproduce.md shows every stored experiment with the command the registry runs."""
    page = (Path(__file__).resolve().parents[1] / "book" / "reproduce.md").read_text()
    for exp in runner.STORED_EXPERIMENTS:
        command = exp.command_line(f"results/{exp.name}")
        assert f"| `{exp.name}` |" in page and f"`{command}`" in page, exp.name


# ------------------------------------------------------------------------- freshness

def test_freshness_says_why_a_result_is_stale(tiny: Path) -> None:
    exp = StoredExperiment("x", str(tiny), {"N": 5})
    good = {"status": "ok", "source_hash": tdml_io.source_hash(), "clean": True,
            "chapter_hash": runner.chapter_code_hash(tiny),
            "params": {"SEED": 0, "N": 5, "NAME": "a"}}
    assert freshness(good, exp) == CURRENT
    assert freshness(None, exp) == ""
    assert freshness({**good, "status": "failed"}, exp) == "no: the run failed"
    assert freshness({k: v for k, v in good.items() if k != "source_hash"}, exp) \
        == "unknown: recorded before source hashes"
    assert freshness({**good, "source_hash": "0" * 64}, exp) == "no: library changed"
    assert freshness({**good, "params": {"N": 4}}, exp) == "no: parameters differ from the registry"
    assert freshness({**good, "clean": False}, exp) == "no: run from uncommitted changes"
    assert freshness({**good, "clean": False}, exp, require_clean=False) == CURRENT
    # editing the chapter's prose changes nothing; editing its code does
    nb = nbformat.read(str(tiny), as_version=4)
    nb.cells[0].source += "\nMore prose."
    nbformat.write(nb, str(tiny))
    assert freshness(good, exp) == CURRENT
    nb.cells[-1].source += "\nextra = 1"
    nbformat.write(nb, str(tiny))
    assert freshness(good, exp) == "no: chapter changed"
    assert freshness({**good, "source_hash": "0" * 64}, exp) == \
        "no: library changed, chapter changed"


def test_freshness_follows_only_the_modules_a_chapter_loaded(tiny: Path) -> None:
    """A chapter run records the modules its kernel loaded: an edit elsewhere in the
    library leaves it current, an edit of one of them (or its removal) does not."""
    exp = StoredExperiment("x", str(tiny), {"N": 5})
    loaded = ["tdml_lib", "tdml_lib.metrics"]
    good = {"status": "ok", "source_hash": "0" * 64, "clean": True,
            "chapter_hash": runner.chapter_code_hash(tiny), "params": {"N": 5},
            "code_modules": loaded, "code_hash": tdml_io.modules_hash(loaded)}
    assert freshness(good, exp) == CURRENT            # the whole library's hash differs
    assert freshness({**good, "code_hash": "0" * 64}, exp) == "no: library changed"
    gone = {**good, "code_modules": loaded + ["tdml_lib.removed"]}
    assert tdml_io.modules_hash(gone["code_modules"]) is None
    assert freshness(gone, exp) == "no: library changed"
    hashes = tdml_io.module_source_hashes()
    edited = {**hashes, "tdml_lib.metrics": "1" * 64}
    assert tdml_io.modules_hash(loaded, edited) != good["code_hash"]
    assert tdml_io.modules_hash(loaded, {**hashes, "tdml_lib.critic": "1" * 64}) == good["code_hash"]


def test_freshness_follows_the_shipped_critic(tiny: Path) -> None:
    """A result that depends on the shipped critic goes out of date when the critic file
    changes (the library's hash covers only its Python sources); one that does not
    depend on it (the baselines) stays current."""
    from tdml_lib.runner.registry import REPOSITORY, SHIPPED_CRITIC_FILE

    now = tdml_io.file_sha256(REPOSITORY / SHIPPED_CRITIC_FILE)
    exp = StoredExperiment("x", str(tiny), {"N": 5}, models=(SHIPPED_CRITIC_FILE,))
    good = {"status": "ok", "source_hash": tdml_io.source_hash(), "clean": True,
            "chapter_hash": runner.chapter_code_hash(tiny), "params": {"N": 5},
            "models": {"shipped critic": {"sha256": now, "file": SHIPPED_CRITIC_FILE}}}
    assert freshness(good, exp) == CURRENT
    old = {**good, "models": {"shipped critic": {"sha256": "0" * 64, "file": SHIPPED_CRITIC_FILE}}}
    assert freshness(old, exp) == "no: critic_numbers.pt changed"
    assert freshness({**good, "models": {}}, exp) == f"no: {SHIPPED_CRITIC_FILE} not recorded"
    baseline = StoredExperiment("y", str(tiny), {"N": 5})
    assert freshness(old, baseline) == CURRENT
    # the stored experiments that score with the critic say so; the baselines do not
    assert {e.name for e in runner.STORED_EXPERIMENTS if SHIPPED_CRITIC_FILE in e.models} == {"transfer", "benchmarks"}
    from tdml_lib.critic import PRETRAINED_PATH, REWARD_CRITIC_PATH, SYNTHETIC_PRETRAINED_PATHS
    assert REPOSITORY / SHIPPED_CRITIC_FILE == PRETRAINED_PATH   # one file, named in two places
    # the agent's default reward reads its own Numbers critic and the synthetic critics, and
    # the runner checks all of them for every experiment that runs the agent with it
    from tdml_lib.runner.registry import SHIPPED_REWARD_FILES
    assert [REPOSITORY / f for f in SHIPPED_REWARD_FILES] == [REWARD_CRITIC_PATH, *SYNTHETIC_PRETRAINED_PATHS]
    import tdml_lib
    reward = tdml_lib.load_reward(device="cpu")
    assert [c.metadata.get("domain") for c in reward.critics] == ["numbers"] + ["synthetic"] * 3
    assert {e.name for e in runner.STORED_EXPERIMENTS if set(SHIPPED_REWARD_FILES) <= set(e.models)} \
        == {"clustering", "benchmarks"}


def write_result(root: Path, name: str, **fields) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "result.json").write_text(json.dumps(
        {"chapter": name, "status": "ok", "wall_time": 60.0, "device": "cpu",
         "command": f"python -m tdml_lib run {name}", "metrics": {}, **fields}))


def test_experiment_status_shows_whether_each_result_is_current(tmp_path: Path) -> None:
    now = tdml_io.source_hash()
    transfer = runner.stored_experiment("transfer")
    from tdml_lib.runner.registry import REPOSITORY, SHIPPED_CRITIC_FILE
    shipped = {"sha256": tdml_io.file_sha256(REPOSITORY / SHIPPED_CRITIC_FILE), "file": SHIPPED_CRITIC_FILE}
    write_result(tmp_path, "transfer", source_hash=now, clean=True, params=dict(transfer.params),
                 git_commit="a" * 40, models={"shipped critic": shipped})
    write_result(tmp_path, "clustering", source_hash="0" * 64, clean=True,
                 params=dict(runner.stored_experiment("clustering").params))
    write_result(tmp_path, "baseline_spc", git_commit="b" * 40 + "-dirty")  # an old record
    write_result(tmp_path, "extra", source_hash=now, clean=False)
    status = reference.experiment_status(reference.load_results(tmp_path)).set_index("experiment")
    assert status.loc["transfer", "current"] == "yes"
    assert status.loc["clustering", "current"] == "no: library changed, " + ", ".join(
        f"{f} not recorded" for f in ("tdml_lib/pretrained/critic_numbers_reward.pt", "tdml_lib/pretrained/critic_synthetic.pt",
                                      "tdml_lib/pretrained/critic_synthetic_seed1.pt",
                                      "tdml_lib/pretrained/critic_synthetic_seed2.pt"))
    assert status.loc["baseline_spc", "current"] == "unknown: recorded before source hashes"
    assert status.loc["baseline_udml", "current"] == ""  # not run
    assert status.loc["extra", "current"] == "no: run from uncommitted changes"
    assert status.loc["baseline_spc", "git commit"] == "b" * 12 + "-dirty"
    assert status.loc["transfer", "git commit"] == "a" * 12


# ------------------------------------------------------------------------- reproduce

def test_reproduce_runs_each_experiment_then_skips_the_current_ones(tiny: Path,
                                                                    tmp_path: Path) -> None:
    results, logs = tmp_path / "results", tmp_path / "logs"
    registry = (StoredExperiment("a", str(tiny), {"N": 5}),
                StoredExperiment("b", str(tiny), {"N": 7}))
    (results / "a").mkdir(parents=True)
    (results / "a" / "stale.png").write_text("from an older run")
    lines: list[str] = []
    rows = runner.reproduce(registry=registry, results_root=results, log_dir=logs,
                            allow_dirty=True, echo=lines.append)
    assert [(r["name"], r["action"], r["status"]) for r in rows] == [("a", "ran", "ok"),
                                                                     ("b", "ran", "ok")]
    assert lines[1].startswith("[1/2] a: running (no result yet); log ")
    assert lines[2].startswith("[1/2] a: ok in ") and "(total " in lines[2]
    assert lines[-1].startswith("reproduce: 2 ran (2 ok, 0 failed), 0 skipped as current; total")
    assert sorted(p.name for p in (results / "a").iterdir()) == [
        "01_tiny.ipynb", "metrics.json", "result.json"]  # replaced as a whole
    assert json.loads((results / "b" / "result.json").read_text())["metrics"]["value"] == 3.5
    assert "$ python -m tdml_lib run" in (logs / "a.log").read_text()
    assert sorted(p.name for p in results.iterdir()) == ["a", "b"]

    lines.clear()
    rows = runner.reproduce(registry=registry, results_root=results, log_dir=logs,
                            allow_dirty=True, echo=lines.append)
    assert [r["action"] for r in rows] == ["skipped", "skipped"]
    assert lines[1:3] == ["[1/2] a: current, skipped", "[2/2] b: current, skipped"]


def test_reproduce_refuses_uncommitted_changes_and_unknown_names(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = (StoredExperiment("a", str(tiny), {"N": 5}),)
    with pytest.raises(ValueError, match="no stored experiment 'b'"):
        runner.reproduce(["b"], registry=registry, results_root=tmp_path, allow_dirty=True)
    busy = tmp_path / "busy"
    busy.mkdir()
    with tdml_io.exclusive_lock(busy / ".reproduce.lock"):  # another reproduce runs there
        with pytest.raises(tdml_io.LockBusy, match=r"is writing .*busy \(a reproduce\)"):
            runner.reproduce(registry=registry, results_root=busy, log_dir=tmp_path / "l",
                             allow_dirty=True)
    monkeypatch.setattr(reproduce_module, "git_state",
                        lambda: {"commit": "c" * 40, "clean": False})
    with pytest.raises(ValueError, match="uncommitted changes .* or pass --allow-dirty"):
        runner.reproduce(registry=registry, results_root=tmp_path / "r", log_dir=tmp_path / "l")
    assert not (tmp_path / "r").exists()


def test_reproduce_moves_a_command_s_files_in_and_keeps_the_others(tiny: Path,
                                                                   tmp_path: Path) -> None:
    """A non-chapter experiment (the benchmarks) adds or replaces only the files it
    writes: another device's benchmark stays."""
    results = tmp_path / "results"
    (results / "bench").mkdir(parents=True)
    (results / "bench" / "bench_cuda.json").write_text("from a GPU")
    registry = (StoredExperiment("bench", None, command=("run", str(tiny), "-p", "N", "4",
                                                          "--out", "{out}", "-q")),)
    rows = runner.reproduce(registry=registry, results_root=results, log_dir=tmp_path / "l",
                            allow_dirty=True, echo=lambda line: None)
    assert rows[0]["status"] == "ok"
    folder = results / "bench"
    assert sorted(p.name for p in folder.iterdir()) == [
        "01_tiny.ipynb", "bench_cuda.json", "metrics.json", "result.json"]
    assert (folder / "bench_cuda.json").read_text() == "from a GPU"
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "ok" and result["source_hash"] == tdml_io.source_hash()
    assert result["outputs"] == ["01_tiny.ipynb", "metrics.json", "result.json"]
    assert sorted(p.name for p in results.iterdir()) == ["bench"]


SLEEPER = """\
import os, time
from pathlib import Path
Path(MARK).write_text(f"{os.getpid()} {os.getppid()}")
time.sleep(SECONDS)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_on_reproduce_keeps_the_old_result_and_leaves_no_process(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "book" / "01_sleep.ipynb",
                        params_source='SECONDS = 0\nMARK = ""\nRESULTS_DIR = None')
    book = nbformat.read(str(nb), as_version=4)
    book.cells[-1] = nbformat.v4.new_code_cell(SLEEPER)
    nbformat.write(book, str(nb))
    results, mark = tmp_path / "results", tmp_path / "mark"
    (results / "s").mkdir(parents=True)
    (results / "s" / "result.json").write_text('{"status": "ok", "old": true}')
    script = ("from tdml_lib.runner import reproduce, StoredExperiment\n"
              f"reproduce(registry=(StoredExperiment('s', {str(nb)!r}, "
              f"{{'SECONDS': 300, 'MARK': {str(mark)!r}}}),), results_root={str(results)!r}, "
              f"log_dir={str(tmp_path / 'logs')!r}, allow_dirty=True)\n")
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=ENV)
    survivors: list[int] = []
    try:
        deadline = time.monotonic() + 150
        while not mark.exists() or not mark.read_text():
            assert job.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        kernel, run = map(int, mark.read_text().split())  # the kernel and its `run` child
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
        deadline = time.monotonic() + 20
        while (alive(run) or alive(kernel)) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [pid for pid in (run, kernel) if alive(pid)]
        assert not survivors, f"still running after kill -9 of reproduce: {survivors}"
        assert json.loads((results / "s" / "result.json").read_text()) == {"status": "ok",
                                                                           "old": True}
    finally:
        if job.poll() is None:
            job.kill()
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
