"""Every kind a user extends is one file: a temporary plugin registers an agreement metric, an
explainer, an attack, a region, a corruption, a dataset and an evaluation suite with its own
metric, and `benchmark run`, `benchmark results` and `benchmark report` use all of them without
any other edit (the report even without the plugin: the results file declares its metrics)."""

import re
import subprocess

from benchmark.results.store import read_results
from conftest import BENCHMARK_CLI, cli_env

PLUGIN = '''
from dataclasses import dataclass

import torch

from benchmark.attacks import Attack, AttackParams
from benchmark.attribution import Explainer
from benchmark.data.split import DataInfo, TensorSplit
from benchmark.dataset import BenchmarkDataset
from benchmark.metrics import AgreementMetric
from benchmark.engine.evaluate import Suite
from benchmark.metrics import Metric
from benchmark.registry import ATTACKS, CORRUPTIONS, DATASETS, EXPLAINERS, METRICS, REGIONS, SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement


@METRICS.register("inverted_accuracy")
class InvertedAccuracy(Metric):
    """Accuracy on the test images with every pixel inverted."""

    label = "accuracy on inverted images"


@SUITES.register("inversion")
class Inversion(Suite):
    """Accuracy when every pixel x becomes 1 - x."""

    @torch.no_grad()
    def run(self, ctx):
        parts = [Records.of(b.index, (ctx.model(1 - b.x).argmax(1) == b.y).float())
                 for b in ctx.batches(ctx.split("test"), limit=16)]
        return [Measurement.of_records("inversion", "inverted_accuracy", Records.concat(parts), eval_set="test")]


@METRICS.register("squared_mass")
class SquaredMass(AgreementMetric):
    """Share of the squared relevance that falls on the object."""

    label = "squared mass on the object"

    def score(self, a, s, *, ranked, top_k):
        squared = a.pow(2)
        return (squared * s).sum(1) / squared.sum(1).clamp_min(1e-12)


@EXPLAINERS.register("gradient_squared")
class GradientSquared(Explainer):
    """Squared input gradient of the target logit."""

    def attribute(self, x, target, generator):
        logit = self.model(x).gather(1, target.view(-1, 1)).sum()
        return torch.autograd.grad(logit, x)[0].pow(2)


@dataclass
class FGSMParams(AttackParams):
    steps: int = 1


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast gradient sign: one step of eps along the sign of the loss gradient."""

    Params = FGSMParams

    def perturb(self, x, y, region, generator):
        x = x.detach().requires_grad_(True)
        grad = torch.autograd.grad(torch.nn.functional.cross_entropy(self.model(x), y), x)[0]
        return (x + self.eps * grad.sign() * region).clamp(0, 1)


@REGIONS.register("top_half")
def top_half(batch, generator=None, block_fraction=0.25):
    """The upper half of the image, object or not."""
    region = torch.zeros_like(batch.mask)
    region[..., : batch.mask.shape[-2] // 2, :] = 1
    return region


@CORRUPTIONS.register("darken")
def darken(x, severity, generator=None):
    """Multiply the pixels by 1 - severity / 10."""
    return x * (1 - severity / 10)


@DATASETS.register("stripes")
class Stripes(BenchmarkDataset):
    """Two classes: a bright vertical or horizontal bar (the object) on a noisy background."""

    default_model = {"encoder": "lenet3", "options": {"embed_dim": 32}}

    @property
    def info(self):
        return DataInfo(2, ("vertical", "horizontal"), (1, 16, 16), (0.3,), (0.3,))

    def split(self, name):
        if name not in self.split_names:
            return super().split(name)
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[name])
        labels = torch.randint(0, 2, (48,), generator=g)
        images = (torch.rand(48, 1, 16, 16, generator=g) * 100).to(torch.uint8)
        masks = torch.zeros(48, 1, 16, 16, dtype=torch.uint8)
        masks[labels == 0, :, :, 6:10] = 1
        masks[labels == 1, :, 6:10, :] = 1
        images[masks.bool()] = 250
        return TensorSplit(images, labels, masks)
'''


def test_one_plugin_file_adds_a_metric_explainer_attack_region_corruption_and_dataset(tmp_path):
    plugin = tmp_path / "my_plugins.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "results"
    proc = subprocess.run([
        *BENCHMARK_CLI, "run", "--plugin", str(plugin), "--method", "vanilla", "--dataset", "stripes", "--out",
        str(out), "--quiet", "--set", "train.epochs=1", "--set", "train.batch_size=16",
        "--set", "eval.suites=accuracy,robustness,corruptions,attribution,inversion",
        "--set", 'robustness.grid={"fgsm": {"background": [0.1], "top_half": [0.1]}}', "--set", "robustness.samples=16",
        "--set", 'corruptions.grid={"darken": [2]}', "--set", "corruptions.samples=16",
        "--set", "attribution.explainers=saliency,gradient_squared", "--set", "attribution.samples=8",
        "--set", "attribution.metrics=relevance_mass_accuracy,squared_mass",
    ], capture_output=True, text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    frame, problems = read_results([out])
    assert problems == [] and set(frame.dataset) == {"stripes"}
    robust = frame[frame.metric == "robust_accuracy"]
    assert {("fgsm", "background"), ("fgsm", "top_half")} <= set(zip(robust.attack, robust.region))
    assert set(frame[frame.metric == "corrupted_accuracy"].attack) == {"darken"}  # core/spurious rows use noise
    scored = frame[frame.suite == "attribution"]
    assert {("gradient_squared", "squared_mass"), ("saliency", "squared_mass")} <= set(zip(scored.explainer,
                                                                                         scored.metric))
    listing = subprocess.run([*BENCHMARK_CLI, "list", "metrics", "squared*", "--plugin", str(plugin)],
                             capture_output=True, text=True, env=cli_env(), timeout=300)
    assert "Share of the squared relevance that falls on the object." in listing.stdout
    inverted = frame[frame.suite == "inversion"]
    assert list(inverted.metric) == ["inverted_accuracy"] and inverted.n.iloc[0] == 16
    results = subprocess.run([*BENCHMARK_CLI, "results", "--out", str(out)], capture_output=True, text=True,
                             env=cli_env(), timeout=300)
    assert results.returncode == 0 and "accuracy on inverted images (inversion) test" in results.stdout
    report = subprocess.run([*BENCHMARK_CLI, "report", "--results", str(out), "--out", str(tmp_path / "board.html")],
                            capture_output=True, text=True, env=cli_env(), timeout=300)  # no --plugin
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "board.html").read_text()
    assert "stripes" in page and "fgsm" in page and "darken" in page
    assert re.search(r"squared mass on the object", page), "the metric's declared label is on the page"
    assert "accuracy on inverted images (inversion) test" in page, "the plugin suite's column is on the board"
