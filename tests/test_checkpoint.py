"""Checkpointing: format checks, random states, and a training run killed and resumed."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tdml_lib.checkpoint import Checkpointer, VERSION, rng_state, set_rng_state
from tdml_lib.io import save_torch


def test_load_returns_none_without_a_checkpoint(tmp_path: Path) -> None:
    assert Checkpointer(tmp_path / "ckpt.pt", every=5).load() is None


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "sub" / "ckpt.pt", every=5, config={"lr": 0.1})
    ckpt.save({"step": 4, "w": torch.arange(3.0), "history": [1.0, 0.5]})
    state = ckpt.load()
    assert state["step"] == 4 and state["history"] == [1.0, 0.5]
    assert torch.equal(state["w"], torch.arange(3.0))
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # no temporary file left


def test_due_every_and_at_the_end() -> None:
    ckpt = Checkpointer("unused.pt", every=10)
    assert [s for s in range(25) if ckpt.due(s, n_steps=25)] == [9, 19, 24]


@pytest.mark.parametrize("every", [0, -1, 2.5, True])
def test_every_must_be_a_positive_integer(every: object) -> None:
    with pytest.raises(ValueError, match="every must be a positive integer"):
        Checkpointer("x.pt", every=every)


def test_other_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    save_torch(path, {"format": "tdml-checkpoint", "version": VERSION + 1, "config": "{}",
                      "state": {"step": 1}})
    with pytest.raises(ValueError, match="format version"):
        Checkpointer(path).load()


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_torch(path, {"weight": torch.ones(2)})
    with pytest.raises(ValueError, match="not a tdml_lib checkpoint"):
        Checkpointer(path).load()
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        Checkpointer(path).load()


def test_other_config_is_refused(tmp_path: Path) -> None:
    Checkpointer(tmp_path / "c.pt", config={"lr": 0.1}).save({"step": 0})
    with pytest.raises(ValueError, match="other settings"):
        Checkpointer(tmp_path / "c.pt", config={"lr": 0.2}).load()


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    gen, prng, tgen = np.random.default_rng(3), random.Random(4), torch.Generator().manual_seed(5)
    prng.gauss(0, 1)  # leaves a cached gauss_next in the state
    ckpt = Checkpointer(tmp_path / "rng.pt")
    ckpt.save({"rng": rng_state(numpy_rng=gen, python_rng=prng, torch_generator=tgen)})

    def draw() -> tuple:
        return (gen.random(3).tolist(), prng.gauss(0, 1), torch.rand(2, generator=tgen).tolist(),
                torch.rand(2).tolist())

    first = draw()
    set_rng_state(ckpt.load()["rng"], numpy_rng=gen, python_rng=prng, torch_generator=tgen)
    assert draw() == first


def test_restoring_a_generator_that_was_not_saved_fails() -> None:
    with pytest.raises(ValueError, match="numpy_rng"):
        set_rng_state(rng_state(), numpy_rng=np.random.default_rng(0))


# A tiny deterministic training loop, following the pattern in tdml_lib.checkpoint.
TRAIN_SCRIPT = textwrap.dedent("""
    import os, random, sys, time
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tdml_lib.checkpoint import Checkpointer, rng_state, set_rng_state
    from tdml_lib.io import save_torch

    ckpt_path, out_path, n_steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pause_at = int(os.environ.get("PAUSE_AT", "-1"))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
    y = (X[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng, prng = np.random.default_rng(0), random.Random(0)

    ckpt = Checkpointer(ckpt_path, every=10, config={"n_steps": n_steps, "lr": 1e-2})
    state = ckpt.load()
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        set_rng_state(state["rng"], numpy_rng=rng, python_rng=prng)
    start = state["step"] + 1 if state else 0
    print(f"start {start}", flush=True)
    for step in range(start, n_steps):
        idx = torch.as_tensor(rng.choice(64, size=16, replace=False))
        noise = prng.gauss(0.0, 0.01)  # dropout draws from torch's global RNG
        loss = F.cross_entropy(model(X[idx] + noise), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ckpt.due(step, n_steps):
            ckpt.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                       "rng": rng_state(numpy_rng=rng, python_rng=prng)})
        print(f"step {step}", flush=True)
        if step == pause_at:  # simulate a long step; the test kills us here
            print("paused", flush=True)
            time.sleep(120)
    save_torch(out_path, model.state_dict())
    print("done", flush=True)
""")


def _run_script(script: Path, ckpt: Path, out: Path, n_steps: int,
                pause_at: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if pause_at is not None:
        env["PAUSE_AT"] = str(pause_at)
    return subprocess.Popen([sys.executable, str(script), str(ckpt), str(out), str(n_steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    n_steps = 40

    # The uninterrupted reference runs beside the interrupted run (saves time).
    ref = _run_script(script, tmp_path / "ref_ckpt.pt", tmp_path / "ref.pt", n_steps)
    # Interrupted run: SIGKILL during step 24, after the checkpoint of step 19.
    ckpt, final = tmp_path / "ckpt.pt", tmp_path / "final.pt"
    proc = _run_script(script, ckpt, final, n_steps, pause_at=24)
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if not line or line == "paused":
                break
            lines.append(line)
        assert line == "paused", (lines, proc.stderr.read() if proc.poll() is not None else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    out, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err
    assert out.splitlines()[0] == "start 0"
    assert not final.exists()
    saved = Checkpointer(ckpt, every=10, config={"n_steps": n_steps, "lr": 1e-2}).load()
    assert saved["step"] == 19

    # Restart: resumes after step 19 and ends with the uninterrupted run's weights.
    again = _run_script(script, ckpt, final, n_steps)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert out.splitlines()[0] == "start 20"
    got = torch.load(final, weights_only=True)
    want = torch.load(tmp_path / "ref.pt", weights_only=True)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
