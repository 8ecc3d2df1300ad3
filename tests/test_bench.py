"""Performance paths keep their promises: precision and chunking do not change rankings."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tdml_lib import bench
from tdml_lib.candidates import candidate_set
from tdml_lib.critic import ClusteringCritic, CriticConfig, fit_critic
from tdml_lib.problems import synthetic_problem, synthetic_problems
from tdml_lib.gae import ClusteringEmbedder


@pytest.fixture(scope="module")
def critic():
    torch.manual_seed(0)
    return ClusteringCritic(ClusteringEmbedder(k=8), hidden=32).eval()


@pytest.fixture(scope="module")
def trained_critic():
    """Precision matters only where scores differ: a briefly trained critic."""
    probs = synthetic_problems(8, n_clusters=(2, 4), points_per_class=(15, 30), n_features=(2, 6), seed=0)
    cfg = CriticConfig(n_negatives=6, epochs=20, problems_per_step=4, gae_epochs=2, gae_clusterings=2,
                       hidden=16, k=6)
    return fit_critic(probs, cfg, seed=0, device="cpu", progress=False)[0]


def test_bf16_ranks_like_fp32(trained_critic):
    p = synthetic_problem("blobs", n_clusters=4, points_per_class=(30, 50), n_features=8, seed=5)
    cset = candidate_set(p, n_negatives=24, seed=0)
    fp32 = trained_critic.score_many(p.X, cset.labelings)
    bf16 = trained_critic.score_many(p.X, cset.labelings, precision="bf16")
    assert spearmanr(fp32, bf16).statistic > 0.95
    assert np.argmax(bf16) in np.argsort(-fp32)[:2]


def test_chunked_passes_equal_one_pass(critic):
    X, labs = bench.random_clusterings(200, 10, seed=2)
    ps = critic.embedder.prepare(X)
    lab_t = torch.as_tensor(labs)
    whole = critic.score_prepared(ps, lab_t, batch_size=10)
    chunked = critic.score_prepared(ps, lab_t, batch_size=3)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_unknown_precision_is_an_error(critic):
    X, labs = bench.random_clusterings(50, 2)
    with pytest.raises(ValueError, match="precision"):
        critic.score_many(X, labs, precision="int8")


def test_scoring_case_reports_ratios(critic):
    row = bench.scoring_case(critic, 120, 16, one_by_one=2, silhouette=2)
    for key in ("batched_per_s", "one_by_one_per_s", "silhouette_per_s", "batched_vs_one_by_one",
                "peak_memory_mb"):
        assert row[key] > 0


def test_scoring_case_shares_a_measured_silhouette_rate(critic):
    # run_benchmarks times silhouette once per size; every batch row must carry that rate
    rate = bench.silhouette_rate(120, labelings=2, repeats=2)
    assert rate > 0
    rows = [bench.scoring_case(critic, 120, b, one_by_one=1, silhouette_per_s=rate) for b in (1, 8)]
    assert [r["silhouette_per_s"] for r in rows] == pytest.approx([rate, rate])
    for r in rows:
        assert r["batched_vs_silhouette"] == pytest.approx(r["batched_per_s"] / rate)


def test_peak_rss_counts_child_processes():
    import subprocess
    import sys

    from tdml_lib.bench import PeakRSS

    with PeakRSS(interval_s=0.05) as mem:
        subprocess.run([sys.executable, "-c",
                        "import time; b = bytearray(300 * 2**20); time.sleep(0.6)"], check=True)
    assert mem.peak_mb > 300  # the child's 300 MB are seen, not only this process


def test_chapter_timing_runs_a_chapter_at_its_defaults():
    from tdml_lib.bench import chapter_cases

    (row,) = chapter_cases(["book/08_results"], progress=False)
    assert row["chapter"] == "08_results" and row["status"] == "ok"
    assert row["wall_s"] > 0 and row["peak_rss_mb"] > 50


def test_peak_memory_is_per_case_not_the_process_lifetime_peak():
    import time

    import torch

    from tdml_lib.bench import PeakMemory

    with PeakMemory(torch.device("cpu")) as big:
        block = bytearray(400 * 2**20)  # zero-filled, so its pages are resident
        time.sleep(0.3)
    del block
    with PeakMemory(torch.device("cpu")) as small:
        time.sleep(0.3)
    assert big.mb > small.mb + 300  # ru_maxrss would report the 400 MB peak for both


def test_peak_rss_of_an_instant_block_is_measured():
    from tdml_lib.bench import PeakRSS

    with PeakRSS() as mem:
        pass
    assert mem.peak_mb > 50  # at least this Python process, never 0


def test_a_busy_cpu_is_named_before_a_benchmark_and_the_load_is_recorded(critic):
    # one busy process per two cores already slows batched scoring many times over
    assert bench.cpu_busy_warning(load_average=1.0, cpu_count=2) is not None
    assert "load average 3.5 on 4 cores" in bench.cpu_busy_warning(load_average=3.5, cpu_count=4)
    assert bench.cpu_busy_warning(load_average=0.3, cpu_count=2) is None
    res = bench.run_benchmarks(critic, sizes=(50,), batches=(4,), agent_sizes=(), progress=False)
    load = res["provenance"]["load_average"]
    assert len(load["before"]) == len(load["after"]) == 3
    # a command running several benchmarks records the load at its own start in each
    res = bench.run_benchmarks(critic, sizes=(50,), batches=(4,), agent_sizes=(), progress=False,
                               load_before=(0.25, 0.5, 0.75))
    assert res["provenance"]["load_average"]["before"] == [0.25, 0.5, 0.75]


def test_a_stored_benchmark_says_how_busy_its_machine_was():
    quiet = {"load_average": {"before": [0.2, 0.3, 0.3], "after": [2.1, 1.0, 0.5]}, "host": {"cpu_count": 2}}
    busy = {"load_average": {"before": [1.2, 1.0, 1.0], "after": [3.1, 2.0, 1.5]}, "host": {"cpu_count": 2}}
    assert bench.load_summary({}) == ""
    assert "busy" not in bench.load_summary(quiet) and "0.2 before" in bench.load_summary(quiet)
    assert "busy" in bench.load_summary(busy)
    late = {**quiet, "load_average": {"before": [0.2, 0.3, 0.3], "after": [3.4, 2.0, 1.0]}}
    assert "busy" in bench.load_summary(late)
