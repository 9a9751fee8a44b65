"""The model bench measures: a given checkpoint, or random weights whose images mean something,
and the label accuracy of what any backend generates from it (the evaluation classifier)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan import limits
from bigbigan.errors import BigBiGANError

RANDOM_SEED = 0
LABEL_SAMPLES = 1000

Infer = Callable[[dict[str, np.ndarray]], np.ndarray]  # feed -> images


def random_checkpoint(
    directory: Path, *, ch: int, dataset: str = "fashion_mnist", seed: int = RANDOM_SEED
) -> Path:
    """A checkpoint with random weights (the reference initialisation, seeded) whose batch-norm
    running statistics are measured on generator inputs, so that images are not saturated at 0
    or 1 (with the initial statistics they are, and pixel differences would mean nothing)."""
    import torch

    from bigbigan.model.networks import BigBiGAN
    from bigbigan.training import checkpoint
    from bigbigan.training.loop import model_config_for
    from bigbigan.training.sampling import truncated_normal

    cfg = model_config_for(dataset, ch=ch, conditional=True)
    limits.check_memory(limits.model_bytes(cfg), f"--ch {ch}")
    torch.manual_seed(seed)
    model = BigBiGAN(cfg)
    norms = [m for m in model.G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    rng = np.random.default_rng(seed)
    model.G.train()
    with torch.no_grad():
        for _ in range(4):
            z = torch.from_numpy(truncated_normal(rng, (256, cfg.z_dim)))
            model.G(z, torch.from_numpy(rng.integers(0, cfg.num_classes, 256)))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    checkpoint.save(directory, model, extra={"random_weights": {"seed": seed, "dataset": dataset}})
    return directory


def model_under_test(
    checkpoint: str | Path | None, ch: int, dataset: str, work: Path, log: Callable[[str], None]
) -> tuple[Path, str, Any]:
    """(checkpoint directory, how the JSON names it, its record): the given checkpoint, or
    random weights at width `ch`; bench measures the conditional generator only."""
    from bigbigan.training import checkpoint as checkpoint_module

    if checkpoint is None:
        log(f"random weights, ch={ch} ({dataset} shapes, seed {RANDOM_SEED})")
        checkpoint = random_checkpoint(work / f"random_ch{ch}", ch=ch, dataset=dataset)
        source = f"random weights (ch={ch}, seed {RANDOM_SEED}, batch-norm statistics measured)"
    else:
        source = str(Path(checkpoint).resolve())
    ckpt = checkpoint_module.read(checkpoint)
    if not ckpt.model.conditional:
        raise BigBiGANError(f"{checkpoint}: bench measures the conditional generator (x1, x2)")
    return Path(checkpoint), source, ckpt


def default_classifier(dataset: str | None) -> Path | None:
    """The shipped evaluation classifier for `dataset`, if there is one."""
    if dataset is None:
        return None
    try:
        from bigbigan.quality.evaluate import default_classifier_path

        return default_classifier_path(dataset)
    except (ImportError, BigBiGANError):
        return None


def classifier_for(classifier: str | Path | None, ckpt: Any) -> Path | None:
    """The classifier that scores label accuracy: the one given, else the shipped one for a
    given checkpoint of its dataset; never for random weights (their labels mean nothing)."""
    if classifier:
        return Path(classifier)
    if "random_weights" in ckpt.extra:
        return None
    return default_classifier(ckpt.dataset)


def generated_label_accuracy(
    infer: Infer,
    classifier_dir: str | Path,
    num_classes: int,
    z_dim: int = 100,
    samples: int = LABEL_SAMPLES,
    batch: int = 100,
    seed: int = 0,
) -> float:
    """The evaluation classifier's accuracy on images from `infer` (any backend) against the
    labels they were generated for: noise from the training distribution, every class equally
    often. Comparable across backends: the same seed gives the same inputs."""
    import torch

    from bigbigan.quality import classifier as classifier_module
    from bigbigan.quality.metrics import label_accuracy
    from bigbigan.training.sampling import class_labels, truncated_normal

    model, _ = classifier_module.load(classifier_dir)
    rng = np.random.default_rng(seed)
    z = truncated_normal(rng, (samples, z_dim))
    y = class_labels(samples, num_classes)
    images = np.concatenate(
        [infer({"x1": z[i : i + batch], "x2": y[i : i + batch]}) for i in range(0, samples, batch)]
    )
    logits, _ = classifier_module.predict_batched(
        model, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    )
    return label_accuracy(logits, y)
