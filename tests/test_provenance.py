"""Provenance records and the file-safety helpers behind them (no kernel: a few seconds).

What a stored result must say about itself: every pinned package version, OS and CPU,
the sha256 of the shipped critic and of the models given, the data sources, the commit
and a clean flag, a hash of the library's sources, and parameters without machine
paths. And the helpers that keep results whole: folder replacement and locks.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tdml_lib import io as tdml_io
from tdml_lib import runner

ROOT = Path(__file__).resolve().parents[1]


def requirement_names() -> list[str]:
    names = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if match:
            names.append(match.group(1))
    return names


def test_provenance_records_every_pinned_package_and_the_machine() -> None:
    record = tdml_io.provenance(device="cpu")
    assert set(record["versions"]) == set(requirement_names())
    for name in ("deap", "scipy", "pandas", "papermill", "torch", "torch-geometric"):
        assert record["versions"][name], name  # installed here, so a version string
    assert record["host"]["os"] and record["host"]["cpu_count"] == os.cpu_count()
    import torch

    threads = record["host"]["threads"]
    assert threads["torch_threads"] == torch.get_num_threads()
    assert threads["OMP_NUM_THREADS"] == os.environ.get("OMP_NUM_THREADS")
    assert "cpu" in record["host"] and record["host"]["python"] == ".".join(
        map(str, sys.version_info[:3]))
    assert record["device"] == "cpu" and record["gpu"] is None
    for field in ("git_commit", "clean", "source_hash", "time_utc", "models", "data_sources"):
        assert field in record, field
    json.dumps(record)  # all of it is JSON


def test_the_shipped_critic_is_identified_by_its_sha256() -> None:
    shipped = ROOT / "tdml_lib" / "pretrained" / "critic_numbers.pt"
    models = tdml_io.provenance(device="cpu")["models"]
    entry = models["tdml_lib/pretrained/critic_numbers.pt"]
    assert entry["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()


def test_models_given_are_hashed_by_file_or_by_weights(tmp_path: Path) -> None:
    import torch

    weights = tmp_path / "critic.pt"
    weights.write_bytes(b"weights v1")
    net = torch.nn.Linear(3, 2)
    models = tdml_io.model_hashes({"file": weights, "net": net})
    assert models["file"]["sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    assert models["file"]["file"] == "<local>/critic.pt"
    before = models["net"]["sha256"]
    assert tdml_io.model_hashes({"net": net})["net"]["sha256"] == before  # stable
    with torch.no_grad():
        net.weight[0, 0] += 1.0
    assert tdml_io.model_hashes({"net": net})["net"]["sha256"] != before
    with pytest.raises(ValueError, match=r"models\['gone'\]: no file at"):
        tdml_io.model_hashes({"gone": tmp_path / "missing.pt"})
    with pytest.raises(ValueError, match="must be a file path or a torch module"):
        tdml_io.model_hashes({"bad": 3})


def test_params_lose_their_machine_paths(tmp_path: Path) -> None:
    inside = str(ROOT / "results" / "transfer")
    params = {"RESULTS_DIR": inside, "OTHER": str(tmp_path / "x.npz"), "REL": "../runs/05",
              "N": 3, "LIST": [inside, 1], "NESTED": {"p": str(tmp_path)}}
    clean = tdml_io.portable(params)
    assert clean == {"RESULTS_DIR": "results/transfer", "OTHER": "<local>/x.npz",
                     "REL": "../runs/05", "N": 3, "LIST": ["results/transfer", 1],
                     "NESTED": {"p": f"<local>/{tmp_path.name}"}}
    assert tdml_io.provenance(params=params, device="cpu")["params"] == clean


def test_source_hash_changes_with_any_library_source(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "notes.txt").write_text("not code")
    first = tdml_io.source_hash(pkg)
    (pkg / "notes.txt").write_text("still not code")
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "b.cpython-311.py").write_text("cache")
    assert tdml_io.source_hash(pkg) == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert tdml_io.source_hash(pkg) != first
    assert len(tdml_io.source_hash()) == 64  # the library's own


def test_data_sources_must_be_texts() -> None:
    with pytest.raises(ValueError, match="data_sources must be a dict"):
        tdml_io.provenance(device="cpu", data_sources={"numbers": 3})


def test_write_metrics_records_provenance_in_one_call(tmp_path: Path) -> None:
    import torch

    path = runner.write_metrics(tmp_path, {"table": [{"best": 1.0}]},
                                params={"SEED": 4, "RESULTS_DIR": str(tmp_path)},
                                data_sources={"letters/test": "rendered fonts"},
                                models={"critic": torch.nn.Linear(2, 1)},
                                device=torch.device("cpu"))
    data = json.loads(path.read_text())
    assert set(data) == {"metrics", "provenance"}
    assert data["metrics"] == {"table": [{"best": 1.0}]}
    prov = data["provenance"]
    assert prov["seed"] == 4 and prov["device"] == "cpu"
    assert prov["params"]["RESULTS_DIR"] == f"<local>/{tmp_path.name}"
    assert prov["data_sources"] == {"letters/test": "rendered fonts"}
    assert {"critic", "tdml_lib/pretrained/critic_numbers.pt"} <= set(prov["models"])
    assert prov["source_hash"] == tdml_io.source_hash()
    with pytest.raises(ValueError, match="metrics must be a mapping"):
        runner.write_metrics(tmp_path, [1, 2])


def test_dataset_sources_reports_what_data_load_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from tdml_lib import data

    calls = []

    class Loaded:
        def __init__(self, name: str, split: str) -> None:
            self.source = f"{name} from somewhere ({split})"

    def fake_load(name: str, split: str = "train") -> Loaded:
        calls.append((name, split))
        return Loaded(name, split)

    monkeypatch.setattr(data, "load", fake_load)
    got = runner.dataset_sources(["numbers", ("letters", "all")])
    assert got == {"numbers/test": "numbers from somewhere (test)",
                   "letters/all": "letters from somewhere (all)"}
    assert runner.dataset_sources("fashion", split="train") == {
        "fashion/train": "fashion from somewhere (train)"}
    assert calls == [("numbers", "test"), ("letters", "all"), ("fashion", "train")]


# ------------------------------------------------------------------ folders and locks

def test_replace_dir_swaps_a_whole_folder(tmp_path: Path) -> None:
    target, new = tmp_path / "exp", tmp_path / ".exp.new"
    target.mkdir()
    (target / "old.json").write_text("old")
    (target / "result.json").write_text("old result")
    new.mkdir()
    (new / "result.json").write_text("new result")
    tdml_io.replace_dir(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["result.json"]
    assert (target / "result.json").read_text() == "new result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # nothing left beside it
    fresh = tmp_path / ".other.new"
    fresh.mkdir()
    tdml_io.replace_dir(fresh, tmp_path / "other")  # no folder there yet
    assert (tmp_path / "other").is_dir() and not fresh.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        tdml_io.replace_dir(target, tmp_path / "file")


def test_replace_dir_without_an_atomic_exchange(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Other systems rename the old folder aside first; the result is the same."""
    monkeypatch.setattr(tdml_io, "_exchange", lambda a, b: False)
    target, new = tmp_path / "exp", tmp_path / ".exp.new"
    target.mkdir()
    (target / "a").write_text("old")
    new.mkdir()
    (new / "b").write_text("new")
    tdml_io.replace_dir(new, target)
    assert [p.name for p in target.iterdir()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_a_lock_is_exclusive_and_dies_with_its_process(tmp_path: Path) -> None:
    lock = tmp_path / ".exp.lock"
    with tdml_io.exclusive_lock(lock, what="exp"):
        with pytest.raises(tdml_io.LockBusy, match=rf"process {os.getpid()}\) is writing exp"):
            with tdml_io.exclusive_lock(lock, what="exp"):
                pass
    assert not lock.exists()  # released and removed
    with tdml_io.exclusive_lock(lock):
        pass
    # a holder killed with SIGKILL releases it: the OS closes its file
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tdml_lib import io\n"
         f"with io.exclusive_lock({str(lock)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(tdml_io.LockBusy):
            with tdml_io.exclusive_lock(lock):
                pass
    finally:
        holder.kill()
        holder.wait()
    with tdml_io.exclusive_lock(lock):
        pass
