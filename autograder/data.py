"""Fashion-MNIST without a network: find the four IDX files, read them, link them into Keras' cache.

Keras' ``fashion_mnist.load_data()`` looks in ``$KERAS_HOME/datasets/fashion-mnist/`` (default
``~/.keras``) before it tries to download, so linking Debian's copy there makes the standard call
in the notebook work offline.
"""

import gzip
import os
from pathlib import Path

import numpy as np

from .errors import DatasetMissing

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

MISSING_MESSAGE = """Fashion-MNIST was not found. Looked in:
{places}
Get it one of two ways:
  1. offline, from Debian:  sudo apt-get install dataset-fashion-mnist && make data
  2. online, once:          python -c "import keras; keras.datasets.fashion_mnist.load_data()"
"""


def keras_cache_dir() -> Path:
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / "fashion-mnist"


def candidate_dirs() -> list:
    extra = os.environ.get("FASHION_MNIST_DIR")
    return [Path(extra)] if extra else [keras_cache_dir(), DEBIAN_DIR]


def find_dataset_dir() -> Path:
    """The first folder that holds all four files, or DatasetMissing naming where it looked."""
    places = candidate_dirs()
    for place in places:
        if all((place / name).is_file() for name in FILES.values()):
            return place
    raise DatasetMissing(MISSING_MESSAGE.format(places="\n".join(f"  {p}" for p in places)))


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header_bytes)


def load_fashion_mnist():
    """((x_train, y_train), (x_test, y_test)) as uint8, shapes (60000, 28, 28), (60000,), ... like Keras."""
    folder = find_dataset_dir()
    x_train = _read_idx(folder / FILES["train_images"], 16).reshape(-1, 28, 28)
    y_train = _read_idx(folder / FILES["train_labels"], 8)
    x_test = _read_idx(folder / FILES["test_images"], 16).reshape(-1, 28, 28)
    y_test = _read_idx(folder / FILES["test_labels"], 8)
    return (x_train, y_train), (x_test, y_test)


def training_subset(n_images: int):
    """The first ``n_images`` training images as float32 (n, 28, 28, 1) in [0, 1], and their int labels."""
    (x_train, y_train), _ = load_fashion_mnist()
    x = x_train[:n_images].astype("float32")[..., None] / 255.0
    return x, y_train[:n_images].astype("int64")


def provision(source: Path = DEBIAN_DIR) -> str:
    """Link Debian's files into Keras' cache; return what was done, or raise DatasetMissing."""
    target = keras_cache_dir()
    if all((target / name).is_file() for name in FILES.values()):
        return f"Fashion-MNIST already in {target}"
    if not all((source / name).is_file() for name in FILES.values()):
        raise DatasetMissing(MISSING_MESSAGE.format(places=f"  {target}\n  {source}"))
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source / name)
    return f"Fashion-MNIST linked from {source} into {target}"


def main(argv=None) -> int:
    """``python -m autograder data``: provision the Keras cache; exit 1 with the how-to when data is missing."""
    import argparse
    argparse.ArgumentParser(
        prog="python -m autograder data",
        description="Find Fashion-MNIST's four files (FASHION_MNIST_DIR, Keras' cache, or Debian's "
                    f"dataset-fashion-mnist in {DEBIAN_DIR}) and link them into Keras' cache, so that "
                    "keras.datasets.fashion_mnist.load_data() works offline. Exits 1, saying how to get "
                    "the data, when it is not on this machine.").parse_args(argv)
    try:
        print(provision())
    except DatasetMissing as missing:
        print(missing, end="")
        return 1
    return 0
