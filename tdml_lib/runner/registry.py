"""The stored experiments: every folder of ``results/``, what makes it, and whether it is current.

One table, :data:`STORED_EXPERIMENTS`. An entry is either a chapter run at full-scale
parameters (``python -m tdml_lib run CHAPTER -p ... --out results/<name>``) or another
subcommand of ``python -m tdml_lib`` (the benchmarks). ``python -m tdml_lib reproduce``
(:mod:`tdml_lib.runner.reproduce`) runs them; chapter 8 lists them
(:func:`tdml_lib.reference.experiment_status`) with :func:`freshness`. Add a new
stored experiment here, and nowhere else.

Stored evaluations use the held-out seeds (``SEED_SET = "held_out"``,
:mod:`tdml_lib.experiments.seeds`), fixed before any of these runs.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from ..io import file_sha256, modules_hash
from ..io import source_hash as _library_source_hash

SHIPPED_CRITIC_FILE = "tdml_lib/pretrained/critic_numbers.pt"
"""The shipped critic, relative to the repository (``load_critic()``'s default)."""
SHIPPED_SYNTHETIC_CRITIC_FILES = tuple(f"tdml_lib/pretrained/critic_synthetic{tail}.pt"
                                       for tail in ("", "_seed1", "_seed2"))
"""The three shipped synthetic critics (synthetic problems only, seeds 0, 1, 2), relative
to the repository (``critic.SYNTHETIC_PRETRAINED_PATHS``; named here so that the runner
need not import torch)."""
SHIPPED_REWARD_CRITIC_FILE = "tdml_lib/pretrained/critic_numbers_reward.pt"
"""The Numbers critic of the agent's default reward (``critic.REWARD_CRITIC_PATH``)."""
SHIPPED_REWARD_FILES = (SHIPPED_REWARD_CRITIC_FILE, *SHIPPED_SYNTHETIC_CRITIC_FILES)
"""The files ``load_reward()``, the agent's default reward, reads."""
REPOSITORY = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class StoredExperiment:
    """One folder of ``results/`` and how it is made.

    Attributes:
        name: the folder, ``results/<name>``.
        chapter: the chapter it runs (stem such as ``"05_transfer"``, or a notebook
            path); for a ``command`` entry, the chapter that reads it (or None).
        params: full-scale parameter overrides of a chapter run.
        command: for other subcommands: the arguments after ``python -m tdml_lib``,
            with ``{out}`` where the output folder goes (empty for a chapter run).
        what: what it holds, in a few words.
        models: model files (relative to the repository) whose numbers the result depends
            on: it goes out of date when one of them changes, as when the library does
            (the library's hash covers only its Python sources). The baselines use none,
            so a new shipped critic leaves their results current.
    """

    name: str
    chapter: str | None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    command: tuple[str, ...] = ()
    what: str = ""
    models: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``"chapter"`` (a chapter run) or ``"command"`` (another subcommand)."""
        return "command" if self.command else "chapter"

    def argv(self, out: str | os.PathLike) -> list[str]:
        """The arguments after ``python -m tdml_lib`` that make this experiment into ``out``."""
        if self.command:
            return [str(out) if a == "{out}" else a for a in self.command]
        args = ["run", str(self.chapter)]
        for name, value in self.params.items():
            args += ["-p", name, value if isinstance(value, str) else repr(value)]
        return args + ["--out", str(out)]

    def command_line(self, out: str | os.PathLike) -> str:
        """The shell command that makes this experiment into ``out`` (quoted for a shell)."""
        import shlex

        return "python -m tdml_lib " + shlex.join(self.argv(out))


STORED_EXPERIMENTS: tuple[StoredExperiment, ...] = (
    StoredExperiment(
        "transfer", "05_transfer",
        {"N_TRAIN_PROBLEMS": 400, "N_SYNTHETIC": 400, "FEW_SHOT_PROBLEMS": 400, "FEW_SHOT_SYNTHETIC": 400,
         "FEW_SHOT_EXAMPLES_PER_CLASS": 20,
         "N_NEGATIVES": 24, "EPOCHS": 100, "GAE_EPOCHS": 10, "CRITIC_SEEDS": [0, 1, 2], "N_EVAL_PROBLEMS": 100,
         "ADVERSARIAL_ROUNDS": 3, "ADVERSARIAL_PROBLEMS": 16, "ADVERSARIAL_GENERATIONS": 15,
         "ABLATIONS": ["domain only", "synthetic only", "WGAN-GP", "GAE codes"], "SEED_SET": "held_out"},
        what="transfer table: critics, the probe, the shipped critic and index baselines rank fixed candidates "
             "(Best / Top 3)",
        models=(SHIPPED_CRITIC_FILE,)),
    StoredExperiment(
        "clustering", "04_agent",
        {"N_PROBLEMS": 10, "GENERATIONS": 25, "POPULATION": 40, "SYNTH_TRAIN_PROBLEMS": 300, "SYNTH_EPOCHS": 100,
         "SYNTH_NEGATIVES": 24, "SYNTH_ADVERSARIAL_ROUNDS": 3, "SYNTH_ADVERSARIAL_PROBLEMS": 32,
         "SYNTH_ADVERSARIAL_GENERATIONS": 10, "SYNTH_ADVERSARIAL_POPULATION": 24, "SYNTH_PROBLEMS": 10,
         "SYNTH_CRITIC_SEEDS": [0, 1, 2], "SYNTH_ENSEMBLE": True, "SEED_SET": "held_out",
         "DOMAIN_METHODS": ["agent (K found)", "agent (true K)", "k-means (true K)", "k-means (K by silhouette)"],
         "WHOLE_SET_DOMAINS": ["numbers", "fashion"]},
        what="clustering: the agent with a transferred critic vs k-means (ACC / NMI / ARI)",
        models=SHIPPED_REWARD_FILES),
    StoredExperiment(
        "benchmarks", "09_performance",
        command=("bench", "--agent-generations", "10", "--book", "--out", "{out}"),
        what="scoring and agent throughput, chapter and whole-book timings (bench_<device>*.json)",
        models=(SHIPPED_CRITIC_FILE, *SHIPPED_REWARD_FILES)),
    StoredExperiment(
        "baseline_spc", "06_selective_pseudo_labels",
        {"SPLIT": "all", "N_IMAGES": 70000, "PRETRAIN_EPOCHS": 5, "ROUNDS": 3, "EPOCHS": 2},
        what="Selective Pseudo-Label Clustering on the same features"),
    StoredExperiment(
        "baseline_udml", "07_cbswr",
        {"SPLIT": "all", "N_IMAGES": 70000, "PRETRAIN_EPOCHS": 5, "EPOCHS": 10},
        what="CBSwR / UDML on the same features"),
)


def stored_experiment(name: str, registry: tuple[StoredExperiment, ...] | None = None
                      ) -> StoredExperiment:
    """The entry called ``name``.

    Raises:
        ValueError: no such entry; the message lists them.
    """
    registry = STORED_EXPERIMENTS if registry is None else registry
    for exp in registry:
        if exp.name == name:
            return exp
    raise ValueError(f"no stored experiment {name!r}; stored experiments: "
                     f"{', '.join(e.name for e in registry)}.")


CURRENT = "yes"


def freshness(result: Mapping[str, Any] | None, experiment: StoredExperiment | None = None, *,
              library_hash: str | None = None, book_dir: str | os.PathLike | None = None,
              require_clean: bool = True) -> str:
    """Whether a stored result was made by the code that is here now.

    Returns:
        ``""`` without a result; :data:`CURRENT` (``"yes"``) when the run succeeded
        from a clean tree with the library's current sources, the chapter's current
        code (``chapter_hash``), the registry's parameters and its current model files;
        "the library's sources" are those of the modules the chapter loaded
        (``code_modules`` / ``code_hash``, recorded by chapter runs) or, for a result
        without them (a benchmark command, an older run), every module (``source_hash``);
        otherwise ``"no: <reason>"``, or ``"unknown: ..."`` for a result recorded
        before source hashes existed.

    Args:
        result: a ``result.json`` as a dict.
        experiment: its registry entry (to check the chapter and the parameters).
        library_hash: the library's source hash now (default: computed).
        book_dir: where the chapter is looked up (default: the book).
        require_clean: count a run from uncommitted changes as not current (``reproduce
            --allow-dirty`` turns this off: the caller accepts such runs).
    """
    if not result:
        return ""
    if result.get("status") != "ok":
        return f"no: the run {result.get('status', 'did not finish')}"
    if not result.get("source_hash"):
        return "unknown: recorded before source hashes"
    reasons = []
    if result.get("code_modules") and result.get("code_hash"):
        if modules_hash(result["code_modules"]) != result["code_hash"]:
            reasons.append("library changed")
    elif result["source_hash"] != (library_hash or _library_source_hash()):
        reasons.append("library changed")
    chapter = experiment.chapter if experiment is not None and experiment.kind == "chapter" \
        else None
    if chapter and result.get("chapter_hash"):
        from .parameters import chapter_code_hash
        from .toc import resolve_chapter

        try:
            now = chapter_code_hash(resolve_chapter(chapter, book_dir))
        except (FileNotFoundError, ValueError):
            now = None
        if now is not None and now != result["chapter_hash"]:
            reasons.append("chapter changed")
    if experiment is not None and experiment.kind == "chapter":
        ran = result.get("params") or {}
        if any(ran.get(k) != v for k, v in experiment.params.items()):
            reasons.append("parameters differ from the registry")
    if experiment is not None:
        reasons += _changed_models(result, experiment.models)
    if require_clean and result.get("clean") is False:
        reasons.append("run from uncommitted changes")
    return "no: " + ", ".join(reasons) if reasons else CURRENT


def _changed_models(result: Mapping[str, Any], files: tuple[str, ...]) -> list[str]:
    """A reason for each of ``files`` whose sha256 now differs from the one the result
    recorded (or that the result did not record)."""
    recorded = {m.get("file"): m.get("sha256") for m in (result.get("models") or {}).values()
                if isinstance(m, Mapping)}
    reasons = []
    for rel in files:
        path = REPOSITORY / rel
        now = file_sha256(path) if path.is_file() else None
        if rel not in recorded:
            reasons.append(f"{rel} not recorded")
        elif now != recorded[rel]:
            reasons.append(f"{Path(rel).name} changed")
    return reasons


def read_result(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``folder/result.json`` as a dict, or None when missing or unreadable."""
    import json

    try:
        data = json.loads((Path(folder) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
