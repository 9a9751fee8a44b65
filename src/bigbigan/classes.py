"""The label names of the datasets `train` reads, for people: the demo's captions and
`evaluate`'s per-class rows. Torch-free, because the demo runs without PyTorch."""

from __future__ import annotations

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(d) for d in range(10)),
    "digits": tuple(str(d) for d in range(10)),
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
}


def class_names(dataset: str | None, num_classes: int) -> list[str]:
    """The dataset's label names; "class N" for a dataset (or a class count) they do not fit."""
    names = CLASS_NAMES.get(dataset or "", ())
    return list(names) if len(names) == num_classes else [f"class {i}" for i in range(num_classes)]
