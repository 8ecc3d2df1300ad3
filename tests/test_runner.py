"""The experiment runner on a tiny notebook: parameters, provenance, failures, sweeps, CLI.

Notebook runs start a Jupyter kernel (about 2 s each), so the file runs about a dozen
of them in all. The Dask sweep uses ``LocalCluster(processes=False)`` (threads in this
process) to save worker start-up time; ``--scheduler local`` in the CLI uses processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tdml_lib import io as tdml_io
from tdml_lib import runner

PARAMS_SOURCE = 'SEED = 0\nN = 3\nNAME = "a"\nRATE = 0.5\nRESULTS_DIR = "."'
BODY_SOURCE = """\
import tdml_lib.runner as runner
value = SEED + N * RATE
with open("executions.log", "a") as f:  # counts executions (cwd = the notebook's folder)
    f.write(f"{NAME} {N} {RATE}\\n")
runner.write_metrics(RESULTS_DIR, {"value": value, "name": NAME},
                     data_sources={"toy": "generated in the notebook"})
assert NAME != "boom", "asked to fail"
"""


def write_notebook(path: Path, params_source: str = PARAMS_SOURCE, tag: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell(params_source)
    if tag:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), cell,
                nbformat.v4.new_code_cell(BODY_SOURCE)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "book" / "01_tiny.ipynb")


def executions(nb: Path) -> list[str]:
    log = nb.parent / "executions.log"
    return log.read_text().splitlines() if log.exists() else []


# ------------------------------------------------------------------ parameters (no kernel)

def test_read_parameters_returns_the_literal_defaults(tiny: Path) -> None:
    assert runner.read_parameters(tiny) == {"SEED": 0, "N": 3, "NAME": "a", "RATE": 0.5,
                                            "RESULTS_DIR": "."}


def test_parameter_values_reads_the_running_values_of_the_parameters_cell(tiny: Path) -> None:
    # a chapter's globals(): injected values, and names that are not parameters
    namespace = {"SEED": 7, "N": 3, "NAME": "b", "RATE": 0.5, "RESULTS_DIR": "/tmp/x", "np": object()}
    values = runner.parameter_values(namespace, tiny)
    assert values == {"SEED": 7, "N": 3, "NAME": "b", "RATE": 0.5}
    assert list(values) == ["SEED", "N", "NAME", "RATE"]          # the cell's order
    with pytest.raises(ValueError, match="RATE"):
        runner.parameter_values({k: v for k, v in namespace.items() if k != "RATE"}, tiny)


def test_parameter_values_outside_a_clone_is_none(tmp_path: Path, monkeypatch) -> None:
    # the library installed as a package (Colab): no book, so no parameters cell to read;
    # the chapter's last cell must still run
    from tdml_lib.runner import toc

    monkeypatch.setattr(toc, "BOOK_DIR", tmp_path / "no_book")
    assert runner.parameter_values({"SEED": 0}, "01_data_and_problems") is None


def test_read_parameters_rejects_code_and_untagged_cells(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="literal"):
        runner.read_parameters(write_notebook(tmp_path / "a.ipynb", "N = 3\nM = N + 1"))
    with pytest.raises(ValueError, match="only 'NAME = literal'"):
        runner.read_parameters(write_notebook(tmp_path / "b.ipynb", "import os"))
    with pytest.raises(ValueError, match="tagged 'parameters'"):
        runner.read_parameters(write_notebook(tmp_path / "c.ipynb", tag=False))


@pytest.mark.parametrize("overrides, expected", [
    ({"N": "5"}, {"N": 5}),
    ({"RATE": "1"}, {"RATE": 1.0}),           # an int is accepted for a float
    ({"RATE": 2}, {"RATE": 2.0}),
    ({"NAME": "5"}, {"NAME": "5"}),          # a str parameter keeps the text
    ({"FLAG": "False"}, {"FLAG": False}),
    ({"SIZES": "[1, 2]"}, {"SIZES": [1, 2]}),
    ({"OPT": "cuda"}, {"OPT": "cuda"}),      # a None default takes a plain word as str
    ({"OPT": "3"}, {"OPT": 3}),
])
def test_validate_overrides_parses_and_checks_types(overrides: dict, expected: dict) -> None:
    defaults = {"N": 3, "RATE": 0.5, "NAME": "a", "FLAG": True, "SIZES": [3], "OPT": None}
    got = runner.validate_overrides(defaults, overrides)
    assert got == expected
    assert all(type(got[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize("overrides, message", [
    ({"RATES": "1"}, r"unknown parameter 'RATES'\. Did you mean RATE\? Valid parameters: N, "),
    ({"N": "2.5"}, r"parameter N expects an int, got '2\.5'"),
    ({"N": "True"}, r"parameter N expects an int"),
    ({"RATE": "fast"}, r"parameter RATE expects a float, got 'fast'"),
    ({"FLAG": "1"}, r"parameter FLAG expects True or False, got '1'"),
    ({"FLAG": "yes"}, r"parameter FLAG expects True or False"),
    ({"NAME": 3}, r"parameter NAME expects a str, got 3"),
    ({"SIZES": "7"}, r"parameter SIZES expects a list"),
])
def test_validate_overrides_errors_name_the_problem(overrides: dict, message: str) -> None:
    defaults = {"N": 3, "RATE": 0.5, "NAME": "a", "FLAG": True, "SIZES": [3]}
    with pytest.raises(ValueError, match=message):
        runner.validate_overrides(defaults, overrides)


def test_resolve_chapter_by_short_names(tmp_path: Path) -> None:
    for name in ("03_critic", "04_agent", "13_extra"):
        write_notebook(tmp_path / f"{name}.ipynb")
    want = (tmp_path / "03_critic.ipynb").resolve()
    for short in ("03", "3", "03_critic", "critic", "03_critic.ipynb"):
        assert runner.resolve_chapter(short, book_dir=tmp_path) == want
    with pytest.raises(FileNotFoundError, match="chapters: 03_critic, 04_agent"):
        runner.resolve_chapter("99", book_dir=tmp_path)


def test_expand_grid_and_load_grid(tmp_path: Path) -> None:
    configs = runner.expand_grid({"N": [1, 2], "RATE": [0.5, 1.0]}, [{"NAME": "z"}])
    assert len(configs) == 5 and configs[0] == {"N": 1, "RATE": 0.5}
    assert configs[-1] == {"NAME": "z"}
    with pytest.raises(ValueError, match="non-empty list"):
        runner.expand_grid({"N": 3})
    grid = tmp_path / "grid.yaml"
    grid.write_text("chapter: 03\ngrid: {N: [1, 2]}\nconfigurations: [{RATE: 2}]\n")
    assert runner.load_grid(grid) == ("3", {"N": [1, 2]}, [{"RATE": 2}])
    grid.write_text("chapter: critic\ngrids: {N: [1]}\n")
    with pytest.raises(ValueError, match="unknown key"):
        runner.load_grid(grid)


def test_config_hash_is_stable_and_ignores_results_dir() -> None:
    a = runner.config_hash({"N": 1, "RATE": 0.5, "RESULTS_DIR": "/x"})
    assert a == runner.config_hash({"RATE": 0.5, "N": 1, "RESULTS_DIR": "/y"})
    assert a != runner.config_hash({"N": 2, "RATE": 0.5})


# ------------------------------------------------------------------------- running

def test_run_with_a_changed_parameter_records_a_different_result(tiny: Path,
                                                                  tmp_path: Path) -> None:
    base = runner.run_chapter(tiny, out_dir=tmp_path / "base", progress=False)
    changed = runner.run_chapter(tiny, {"N": "5"}, out_dir=tmp_path / "n5", progress=False)
    assert base.ok and changed.ok
    assert base.metrics == {"value": 1.5, "name": "a"}
    assert changed.metrics == {"value": 2.5, "name": "a"}
    result = json.loads(changed.result_path.read_text())
    for field in ("params", "seed", "device", "versions", "git_commit", "wall_time", "command",
                  "status", "data_sources", "time_utc", "chapter"):
        assert field in result, field
    assert result["status"] == "ok" and result["error"] is None
    # no machine path: the output folder, outside the clone, is named but not located
    assert result["params"] == {"SEED": 0, "N": 5, "NAME": "a", "RATE": 0.5,
                                "RESULTS_DIR": "<local>/n5"}
    assert str(tmp_path) not in json.dumps(result)
    assert result["seed"] == 0 and result["wall_time"] > 0
    assert result["data_sources"] == {"toy": "generated in the notebook"}
    assert result["versions"]["torch"] and result["device"] in ("cpu", "cuda", "mps")
    assert result["source_hash"] == tdml_io.source_hash() and "clean" in result
    assert result["chapter_hash"] == runner.chapter_code_hash(tiny)
    assert " run " in result["command"] and "-p N 5" in result["command"]
    assert "--out" in result["command"]
    # the modules the kernel loaded, measured by a cell the runner appends and removes
    assert "tdml_lib.runner.metrics" in result["code_modules"]
    assert "tdml_lib.critic" not in result["code_modules"]   # this chapter never scores
    assert result["code_hash"] == tdml_io.modules_hash(result["code_modules"])
    executed = nbformat.read(str(changed.notebook), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert len(executed.cells) == 4 and "modules" not in executed.cells[-1].source
    assert executed.metadata["papermill"]["input_path"].endswith("/01_tiny.ipynb")  # not the copy
    assert sorted(p.name for p in changed.out_dir.iterdir()) == [
        "01_tiny.ipynb", "metrics.json", "result.json"]  # no partial file left
    assert executions(tiny) == ["a 3 0.5", "a 5 0.5"]


def test_bad_parameters_fail_before_anything_runs(tiny: Path, tmp_path: Path) -> None:
    for bad in ({"NN": 1}, {"N": "2.5"}, {"RESULTS_DIR": "/elsewhere"}):
        out = tmp_path / "never"
        with pytest.raises(ValueError):
            runner.run_chapter(tiny, bad, out_dir=out, progress=False)
        assert not out.exists()
    assert executions(tiny) == []


def test_a_failing_chapter_is_recorded_as_failed(tiny: Path, tmp_path: Path) -> None:
    rec = runner.run_chapter(tiny, {"NAME": "boom"}, out_dir=tmp_path / "boom", progress=False)
    assert rec.status == "failed" and "AssertionError" in rec.error
    result = json.loads(rec.result_path.read_text())
    assert result["status"] == "failed" and "asked to fail" in result["error"]
    assert result["metrics"] == {}
    assert rec.notebook.exists()  # the executed notebook shows the error
    assert not list(rec.out_dir.glob(".*"))


def test_sweep_on_a_dask_cluster_resumes_without_repeating_work(tiny: Path,
                                                                 tmp_path: Path) -> None:
    from dask.distributed import Client, LocalCluster

    grid = {"N": [1, 2], "RATE": [0.5, 2.0]}
    root = tmp_path / "sweep"
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        first = runner.sweep(tiny, grid, root, executor=client.get_executor(), progress=False)
        assert [r.status for r in first] == ["ok"] * 4 and not any(r.skipped for r in first)
        assert len({r.out_dir for r in first}) == 4
        assert [r.metrics["value"] for r in first] == [0.5, 2.0, 1.0, 4.0]
        assert sorted(executions(tiny)) == ["a 1 0.5", "a 1 2.0", "a 2 0.5", "a 2 2.0"]

        again = runner.sweep(tiny, grid, root, executor=client.get_executor(), progress=False)
        assert all(r.skipped for r in again) and len(executions(tiny)) == 4
        assert [r.metrics for r in again] == [r.metrics for r in first]

        # An interrupted sweep: one run left no result.json; only it runs again.
        first[1].result_path.unlink()
        resumed = runner.sweep(tiny, grid, root, executor=client.get_executor(), progress=False)
        assert [r.skipped for r in resumed] == [True, False, True, True]
        assert len(executions(tiny)) == 5 and executions(tiny)[-1] == "a 1 2.0"
    index = json.loads((root / "sweep.json").read_text())
    assert [run["dir"] for run in index["runs"]] == [r.out_dir.name for r in first]


def test_sweep_validates_every_configuration_first(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"configuration 1 .*expects an int"):
        runner.sweep(tiny, configurations=[{"N": 1}, {"N": "x"}], out_root=tmp_path / "s",
                     progress=False)
    assert not (tmp_path / "s").exists() and executions(tiny) == []


def test_cli_run_and_fast_failure(tiny: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "tdml_lib", "run", str(tiny), "-p", "N", "5",
                           "--out", str(out), "-q"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert "result.json" in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["params"]["N"] == 5 and result["metrics"]["value"] == 2.5

    bad = subprocess.run([sys.executable, "-m", "tdml_lib", "run", str(tiny), "-p", "SED", "1"],
                         capture_output=True, text=True, env=env, timeout=180)
    assert bad.returncode == 2 and "Did you mean SEED?" in bad.stderr
    assert executions(tiny) == ["a 5 0.5"]


def test_metrics_json_shapes_are_read(tmp_path: Path) -> None:
    runner.write_metrics(tmp_path, {"value": 1}, data_sources={"numbers": "MNIST"},
                         device="cpu")
    metrics, prov = runner.read_metrics(tmp_path)
    assert metrics == {"value": 1}
    assert prov["data_sources"] == {"numbers": "MNIST"} and prov["device"] == "cpu"
    # the shape chapters wrote before write_metrics recorded provenance itself
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"table": [1], "provenance": {"device": "cpu", "data_sources": {"a": "b"}}}))
    assert runner.read_metrics(tmp_path) == ({"table": [1]},
                                             {"device": "cpu", "data_sources": {"a": "b"}})
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"metrics": {"v": 2}, "data_sources": {"a": "b"}, "device": "cuda"}))
    assert runner.read_metrics(tmp_path) == ({"v": 2}, {"data_sources": {"a": "b"},
                                                        "device": "cuda"})
    assert runner.write_metrics(None, {"value": 1}) is None


# ------------------------------------------- the results readers of chapter 8 (reference)

def write_result(root: Path, name: str, metrics: dict, status: str = "ok") -> None:
    (root / name).mkdir(parents=True)
    (root / name / "result.json").write_text(json.dumps(
        {"chapter": name, "status": status, "wall_time": 120.0, "device": "cuda",
         "gpu": "GPU X", "command": f"python -m tdml_lib run {name}", "metrics": metrics}))


def test_results_fill_only_the_cells_they_report(tmp_path: Path) -> None:
    from tdml_lib import reference

    write_result(tmp_path, "transfer", {
        "table": [{"train": "numbers", "regime": "standard", "test": "letters", "best": 80.0,
                   "top3": 95.0, "n_problems": 50}],
        "baselines": [{"scorer": "silhouette", "features_from": "numbers", "test": "letters",
                       "best": 4.0, "top3": 12.0}]})
    write_result(tmp_path, "clustering", {"clustering": [
        {"dataset": "numbers", "method": "agent", "acc": 0.9, "nmi": 0.8, "ari": 0.7}]})
    results = reference.load_results(tmp_path)
    comp = reference.poster_comparison(results)
    assert len(comp) == 12 and comp["ours best"].notna().sum() == 1
    cell = comp[(comp.train == "numbers") & (comp.regime == "standard") & (comp.test == "letters")]
    assert cell["ours best"].item() == 80.0 and cell["diff best"].item() == pytest.approx(-6.0)
    shown = reference.for_display(comp)
    assert (shown["ours best"] == reference.NOT_RUN).sum() == 11

    clust = reference.clustering_comparison(results)
    ours = clust[clust.kind == "ours"].set_index(["dataset", "method"])
    assert ours.loc[("numbers", "agent"), "acc"] == 0.9
    assert ours.loc[("fashion", "kmeans"), "source"] == reference.NOT_RUN
    # whole-dataset methods are expected on Numbers and Fashion only
    assert ours.loc[("fashion", "spc"), "source"] == reference.NOT_RUN
    assert ("letters", "spc") not in ours.index and ("letters", "kmeans") in ours.index
    published = clust[clust.kind == "published"]
    assert len(published) == len(reference.PUBLISHED_CLUSTERING)

    base = reference.baseline_table(results)
    assert base.to_dict("records")[0]["scorer"] == "silhouette"
    status = reference.experiment_status(results).set_index("experiment")["status"]
    assert status["transfer"] == "ok" and status["baseline_spc"] == reference.NOT_RUN
    assert reference.load_results(tmp_path / "missing") == {}


@pytest.mark.parametrize("metrics, message", [
    ({"table": [{"train": "numbers", "regime": "standard", "test": "letters", "best": 0.8,
                 "top3": 120}]}, r"transfer.*table\[0\].*'top3' must be a percentage"),
    ({"table": [{"train": "numbers", "regime": "oneshot", "test": "letters", "best": 8,
                 "top3": 9}]}, r"'regime' must be one of"),
    ({"clustering": [{"dataset": "numbers", "method": "agent", "acc": 91.0}]},
     r"'acc' must be a fraction in \[0, 1\] \(not a %\)"),
    ({"baselines": [{"features_from": "numbers", "test": "letters", "best": 1, "top3": 2}]},
     r"baselines\[0\]: a baseline row needs a 'scorer'"),
])
def test_results_with_a_broken_schema_are_refused(tmp_path: Path, metrics: dict,
                                                  message: str) -> None:
    from tdml_lib import reference

    write_result(tmp_path, "transfer", metrics)
    with pytest.raises(ValueError, match=message):
        reference.load_results(tmp_path)


def test_adversarial_regime_is_read_beside_the_standard_one(tmp_path: Path) -> None:
    """Chapter 5's extra row is accepted, kept out of the poster's 12 cells, and compared
    cell by cell with the standard critic."""
    from tdml_lib import reference

    cell = {"train": "numbers", "test": "letters", "mean_rank": 2.0}
    write_result(tmp_path, "transfer", {"table": [
        {**cell, "regime": "standard", "best": 40.0, "top3": 80.0},
        {**cell, "regime": reference.ADVERSARIAL_REGIME, "best": 50.0, "top3": 75.0},
        {**cell, "test": "fashion", "regime": "standard", "best": 10.0, "top3": 30.0}]})
    results = reference.load_results(tmp_path)
    assert reference.poster_comparison(results)["ours best"].notna().sum() == 2
    effect = reference.adversarial_effect(results)
    assert len(effect) == 1   # fashion has no adversarial row
    row = effect.iloc[0]
    assert row["change best"] == 10.0 and row["change top3"] == -5.0
    assert reference.adversarial_effect({}).empty


def test_a_cell_reported_twice_is_an_error(tmp_path: Path) -> None:
    from tdml_lib import reference

    row = {"train": "numbers", "regime": "standard", "test": "letters", "best": 8, "top3": 9}
    write_result(tmp_path, "transfer", {"table": [row]})
    write_result(tmp_path, "transfer_again", {"table": [row]})
    with pytest.raises(ValueError, match="reported twice"):
        reference.poster_comparison(reference.load_results(tmp_path))


def test_git_commit_ignores_results_but_not_code(tmp_path: Path) -> None:
    """A run rewriting its committed results/ is not 'dirty'; edited code is, and so is
    an untracked file (it can change what runs), but not runs/ or git-ignored files."""
    import subprocess

    from tdml_lib.io import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "metrics.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_commit(tmp_path)
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (tmp_path / "results" / "metrics.json").write_text('{"new": 1}')
    (tmp_path / "results" / "new_experiment").mkdir()
    (tmp_path / "results" / "new_experiment" / "result.json").write_text("{}")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "out.txt").write_text("x")
    (tmp_path / "nohup.out").write_text("progress of `nohup make results &`")
    assert git_commit(tmp_path) == clean
    assert tdml_io.git_state(tmp_path) == {"commit": clean, "clean": True}
    (tmp_path / ".gitignore").write_text("*.log\n")
    git("add", ".gitignore")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore logs")
    clean = git_commit(tmp_path)
    (tmp_path / "debug.log").write_text("ignored")
    assert git_commit(tmp_path) == clean
    (tmp_path / "helper.py").write_text("y = 1\n")   # untracked code
    assert git_commit(tmp_path) == clean + "-dirty"
    assert tdml_io.git_state(tmp_path)["clean"] is False
    (tmp_path / "helper.py").unlink()
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "-dirty"


def test_git_state_outside_a_clone_is_unknown(tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("not_a_clone")
    assert tdml_io.git_state(outside) == {"commit": None, "clean": None}
    assert tdml_io.git_commit(outside) == "unknown"


def test_figures_are_kept_when_the_shell_says_agg(tmp_path: Path, monkeypatch) -> None:
    """A headless shell's MPLBACKEND=Agg must not strip the figures from a run's notebook."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = write_notebook(tmp_path / "book" / "01_plot.ipynb")
    nb_obj = nbformat.read(str(nb), as_version=4)
    nb_obj.cells.append(nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()"))
    nbformat.write(nb_obj, str(nb))
    record = runner.run_chapter(nb, out_dir=tmp_path / "out", progress=False)
    assert record.status == "ok", record.error
    outputs = [o for c in nbformat.read(str(record.notebook), as_version=4).cells
               for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_runs_in_two_threads_each_start_in_their_own_folder(tmp_path: Path) -> None:
    """Each kernel starts in its notebook's folder even when two runs overlap in threads
    (a process-wide chdir let one run's kernel start in the other's folder), and the
    process's own working directory is left alone."""
    from concurrent.futures import ThreadPoolExecutor

    books = [tmp_path / name / "book" for name in ("first", "second")]
    notebooks = [write_notebook(book / "01_tiny.ipynb") for book in books]
    cwd = os.getcwd()
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(lambda nb: runner.run_chapter(nb, out_dir=nb.parent / "out", progress=False),
                                notebooks))
    assert [r.status for r in records] == ["ok", "ok"]
    assert [executions(nb) for nb in notebooks] == [["a 3 0.5"], ["a 3 0.5"]]
    assert os.getcwd() == cwd



def test_seed_spread_sets_the_ensemble_beside_the_seeds(tmp_path: Path) -> None:
    from tdml_lib import reference

    cell = {"train": "numbers", "regime": "standard", "protocol": "strict", "test": "letters", "top3": 90.0}
    write_result(tmp_path, "transfer", {"table": [
        {**cell, "scorer": "critic", "best": 70.0, "best_seed_min": 60.0, "best_seed_max": 80.0, "n_seeds": 3},
        {**cell, "scorer": reference.ENSEMBLE, "best": 85.0}]})
    spread = reference.seed_spread(reference.load_results(tmp_path))
    assert spread[["best", "best_seed_max", "best_ensemble"]].values.tolist() == [[70.0, 80.0, 85.0]]
    # the ensemble is a scorer of its own in every other table
    assert reference.ENSEMBLE in set(reference.scorer_summary(reference.load_results(tmp_path)).scorer)


def test_candidate_difficulty_and_top_negatives_share_the_order_closest_to_the_truth(tmp_path: Path) -> None:
    from tdml_lib import reference

    assert reference.top_negative_counts({}).empty and reference.candidate_difficulty({}).empty
    kinds = [{"features_from": "letters", "test": "letters", "kind": k, "ari": a}
             for k, a in [("merge_closest", 0.6), ("noise_boundary_2", 0.95), ("kmeans_K", 0.3)]]
    cell = {"regime": "standard", "protocol": "strict", "test": "letters", "rank": 2}
    ranks = [{**cell, "scorer": "critic", "train": t, "critic_seed": s, "problem": p, "top_kind": k}
             for t, s, p, k in [("numbers", 0, 0, "merge_closest"), ("numbers", 1, 0, "noise_boundary_2"),
                                ("fashion", 0, 0, "merge_closest"), ("fashion", 0, 1, None)]]
    ranks.append({**cell, "scorer": "probe", "train": "numbers", "critic_seed": None, "problem": 0,
                  "top_kind": "kmeans_K"})
    write_result(tmp_path, "transfer", {"table": [], "kind_agreement": kinds, "ranks": ranks,
                                        "near_truth_kinds": ["noise_boundary_2"]})
    results = reference.load_results(tmp_path)
    difficulty = reference.candidate_difficulty(results)
    assert list(difficulty.index) == ["noise_boundary_2", "merge_closest", "kmeans_K"]
    assert difficulty["top negative (problems)"].tolist() == [1, 2, 0]   # every seed, the critic's rows only
    assert difficulty["near truth"].tolist() == ["yes", "", ""]
    counts = reference.top_negative_counts(results)
    assert list(counts.index) == ["noise_boundary_2", "merge_closest"]
    assert counts.loc["merge_closest"].to_dict() == {"Fashion → Letters": 1, "Numbers → Letters": 1}
    # an order already computed is taken as given; kinds it does not name come after
    reordered = reference.top_negative_counts(results, order=["merge_closest"])
    assert list(reordered.index) == ["merge_closest", "noise_boundary_2"]
    assert reordered.equals(counts.loc[list(reordered.index)])


def test_seed_mean_below_names_the_cells_where_the_mean_over_seeds_loses(tmp_path: Path) -> None:
    from tdml_lib import reference

    assert reference.seed_mean_below({}).empty and reference.seed_mean_below({}).attrs["n_cells"] == 0
    cell = {"train": "fashion", "protocol": "strict", "top3": 90.0}
    table = [{**cell, "regime": regime, "test": test, "scorer": scorer, "best": best}
             for regime, test, scorer, best in [
                 ("standard", "numbers", "critic", 52.0), ("standard", "numbers", "probe", 54.0),
                 ("standard", "letters", "critic", 64.0), ("standard", "letters", "probe", 58.0),
                 ("few-shot", "letters", "critic", 10.0), ("few-shot", "letters", "probe", 90.0)]]
    write_result(tmp_path, "transfer", {"table": table})
    below = reference.seed_mean_below(reference.load_results(tmp_path))
    assert below.attrs["n_cells"] == 2   # the standard regime's only
    assert below[["test", "best", "best_other"]].values.tolist() == [["numbers", 52.0, 54.0]]
    assert len(reference.seed_mean_below(reference.load_results(tmp_path), regime="few-shot")) == 1


def test_packages_load_only_what_is_used() -> None:
    """A chapter that only writes its metrics, or runs a baseline, loads neither the critic
    nor the agent (so a new reward leaves its stored result current); a function and the
    submodule of the same name (``runner.sweep``) do not shadow each other."""
    import subprocess
    import sys

    script = (
        "import sys, tdml_lib.runner as r\n"
        "from tdml_lib.runner import write_metrics\n"
        "from tdml_lib.experiments import evaluate_baseline\n"
        "loaded = {m for m in sys.modules if m.startswith('tdml_lib')}\n"
        "assert not loaded & {'tdml_lib.critic', 'tdml_lib.agent', 'tdml_lib.gae', 'tdml_lib.runner.execute'}, loaded\n"
        "import tdml_lib.runner.sweep, tdml_lib.runner.reproduce\n"
        "assert callable(r.sweep) and callable(r.reproduce), (r.sweep, r.reproduce)\n"
        "import tdml_lib\n"
        "assert tdml_lib.cluster.__module__ == 'tdml_lib.agent' and 'cluster' in dir(tdml_lib)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
