"""Where a run's weights come from, and where the run happens.

`Workspace` is the "where": results folder, data root, device and the reporter, the same for every
entry point (`run`, `evaluate_checkpoint`, `evaluate_model`, `evaluate_spec`). A weight source is
the "what": `Training` trains (or reuses this config's finished checkpoint), `FromCheckpoint`
loads saved weights, `AsGiven` takes a model built elsewhere. `run.execute` asks the source, never
which kind it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from benchmark import provenance
from benchmark.checkpoint import TrainingRecord, save_checkpoint
from benchmark.config import RunConfig, from_dict
from benchmark.engine.start import StartPoint, find_start, load_start
from benchmark.engine.train import Checkpointing, TrainResult, train
from benchmark.engine.trained import load_trained, trained_by, trained_earlier
from benchmark.models import Classifier
from benchmark.progress import Reporter
from benchmark.results.layout import RunFiles

if TYPE_CHECKING:
    from benchmark.dataset import BenchmarkDataset
    from benchmark.distributed import World
    from benchmark.method import Method


@dataclass(frozen=True)
class Workspace:
    """Where a run happens: the results folder, the data root (None: the dataset's default), the
    device ("auto": CUDA when there is one) and who reports progress (None: nobody)."""

    out_dir: Path = Path("results")
    data_root: Path | None = None
    device: str = "auto"
    reporter: Reporter | None = None

    def files(self, config: RunConfig) -> RunFiles:
        return RunFiles.of(config, self.out_dir)


@dataclass
class Built:
    """What a run builds before it takes its lock: the config and where it runs, its dataset,
    method and model."""

    config: RunConfig
    files: RunFiles
    device: Any  # torch.device
    world: World
    reporter: Reporter
    dataset: BenchmarkDataset
    method: Method
    model: Classifier


class WeightSource(Protocol):
    """How `execute` obtains a run's weights."""

    @property
    def trains(self) -> bool: ...  # it trains: the run writes a checkpoint and needs the training data

    @property
    def reuses(self) -> bool: ...  # suites (and pieces) an earlier execution finished may be kept

    @property
    def model(self) -> Classifier | None: ...  # a model built elsewhere, else None

    def load(self, built: Built) -> None: ...  # before the checks: weights a source brings

    def obtain(self, built: Built, start: StartPoint | None) -> TrainResult | None: ...  # under the lock

    def history(self, result: TrainResult | None) -> list[dict[str, float]]: ...

    def trained_by(self, result: TrainResult | None) -> str: ...

    def marks(self, result: TrainResult | None) -> dict[str, Any]: ...  # what every row's `extra` carries


@dataclass(frozen=True)
class Training:
    """Train (`benchmark run`): with `resume`, continue a resume checkpoint (written at epoch ends
    and every `checkpoint_every` steps) and reuse a finished checkpoint of the same key."""

    resume: bool = True
    checkpoint_every: int | None = None
    trains = True
    model = None

    @property
    def reuses(self) -> bool:
        return self.resume

    def load(self, built: Built) -> None:
        return None

    def obtain(self, built: Built, start: StartPoint | None) -> TrainResult:
        """Reuse this config's finished checkpoint (with `resume`), or train (from `start`'s
        weights when given) and write one."""
        files, key = built.files, built.config.key()
        result = trained_earlier(files.checkpoint, key, built.model, built.method, built.reporter) \
            if self.resume else None
        if result is None:
            result = self._train(built, start)
            if not built.world.main:
                return result
            save_trained(built, result)
        files.resume.unlink(missing_ok=True)
        return result

    def _train(self, built: Built, start: StartPoint | None) -> TrainResult:
        if not self.resume and built.world.main:
            built.files.resume.unlink(missing_ok=True)
        if start is None and built.config.start is not None:  # the checkpoint went missing under the lock
            start = find_start(built.config, built.files.out_dir)
        if start is not None:
            load_start(built.model, start)
            built.reporter.log(f"  starting from the weights of {start.path}")
        result = train(built.model, built.method, built.dataset, built.config, built.device, built.reporter,
                       Checkpointing(built.files.resume, every_steps=self.checkpoint_every, share=self.resume),
                       built.world)
        result.train_commit = provenance.git_commit()
        result.init_from = start.run_key if start else None
        return result

    def history(self, result: TrainResult | None) -> list[dict[str, float]]:
        return result.history if result else []

    def trained_by(self, result: TrainResult | None) -> str:
        return result.train_commit if result else "unknown"

    def marks(self, result: TrainResult | None) -> dict[str, Any]:
        return {"init_from": result.init_from} if result and result.init_from else {}


def save_trained(built: Built, result: TrainResult) -> None:
    """The finished checkpoint of a run trained now: weights, method state, config, training record."""
    record = TrainingRecord(built.config.key(), result.history, result.duration_s, result.train_commit,
                            provenance.versions_json(), result.init_from)
    save_checkpoint(built.files.checkpoint, model=built.model, method_state=built.method.state_dict(),
                    config_json=built.config.to_json(), training=record)


@dataclass(frozen=True)
class FromCheckpoint:
    """Weights saved by a run (`benchmark attack`, a sweep's final evaluation): `payload` is the
    loaded checkpoint, `path` where it came from."""

    payload: Mapping[str, Any]
    path: Path | None = None
    trains = False
    reuses = True
    model = None

    def load(self, built: Built) -> None:
        load_trained(built.model, built.method, self.payload, self.path, built.config.dataset)

    def obtain(self, built: Built, start: StartPoint | None) -> None:
        return None

    def history(self, result: TrainResult | None) -> list[dict[str, float]]:
        return list(self.payload.get("history", []))

    def trained_by(self, result: TrainResult | None) -> str:
        return trained_by(self.payload)

    def marks(self, result: TrainResult | None) -> dict[str, Any]:
        """The run key of the evaluated checkpoint, and the checkpoint its training started from."""
        marks: dict[str, Any] = {}
        if self.path is not None:
            marks["checkpoint_key"] = self.payload.get("run_key") or from_dict(self.payload["config"]).key()
        if self.payload.get("init_from"):
            marks["init_from"] = self.payload["init_from"]
        return marks


@dataclass(frozen=True)
class AsGiven:
    """Weights that come with the model (one trained elsewhere): nothing is trained or loaded."""

    given: Classifier | None = field(default=None)  # None: the model the config builds (model.encoder=external)
    by: str = "external"  # what the rows' train_commit says
    trains = False
    reuses = True

    @property
    def model(self) -> Classifier | None:
        return self.given

    def load(self, built: Built) -> None:
        return None

    def obtain(self, built: Built, start: StartPoint | None) -> None:
        return None

    def history(self, result: TrainResult | None) -> list[dict[str, float]]:
        return []

    def trained_by(self, result: TrainResult | None) -> str:
        return self.by

    def marks(self, result: TrainResult | None) -> dict[str, Any]:
        return {}
