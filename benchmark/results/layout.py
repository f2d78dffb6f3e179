"""Where a run's files live in a results folder: results, checkpoints, artefacts, logs and the
lock, all named by the run's stem. Every writer and reader (the leaderboard included) asks here."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from benchmark.files import exclusive, remove_temporaries
from benchmark.progress import Reporter


def run_file_name(method: str, dataset: str, profile: str, seed: int, run_key: str) -> str:
    """One file per configuration: a repeated run replaces its earlier file."""
    return f"{method}__{dataset}__{profile}__seed{seed}__{run_key}.parquet"


@dataclass(frozen=True)
class RunFiles:
    """Where one run's outputs live in a results folder, all named by the run's stem."""

    out_dir: Path
    stem: str

    @property
    def results(self) -> Path:
        return self.out_dir / f"{self.stem}.parquet"

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / "checkpoints" / f"{self.stem}.pt"

    @property
    def resume(self) -> Path:
        return self.out_dir / "checkpoints" / f"{self.stem}.resume.pt"

    @property
    def pieces(self) -> Path:
        """The finished pieces of suites an interrupted or failed evaluation left unfinished (rows
        in the results schema): what a rerun takes instead of measuring again. Hidden beside the
        results file, so that readers of the folder never take it for results."""
        return self.out_dir / f".{self.stem}.pieces.parquet"

    @property
    def artifacts(self) -> Path:
        return self.out_dir / "artifacts" / self.stem

    @contextlib.contextmanager
    def claimed(self, run_key: str, reporter: Reporter) -> Iterator["RunFiles"]:
        """Hold this run's lock (other processes running the same config wait), after clearing
        what a killed writer may have left."""
        def waiting():
            reporter.log(f"  waiting: another process is running {self.stem}")

        with exclusive(self.out_dir / ".locks" / f"{run_key}.lock", on_wait=waiting):
            for path in (self.results, self.checkpoint, self.resume, self.pieces):
                remove_temporaries(path)
            yield self

    @property
    def log(self) -> Path:
        return self.out_dir / "logs" / f"{self.stem}.txt"

    @classmethod
    def of(cls, config, out_dir: Path) -> "RunFiles":
        """The files of a resolved run configuration in `out_dir`."""
        name = run_file_name(config.method_name, config.dataset, config.profile, config.seed, config.key())
        return cls(Path(out_dir), Path(name).stem)

    @classmethod
    def of_results(cls, results: Path) -> "RunFiles":
        """The files of the run that wrote the results file `results`."""
        return cls(Path(results).parent, Path(results).stem)


