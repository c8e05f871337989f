"""Datasets as whole uint8 tensors [N, C, H, W]: torchvision's digit sets, image folders and .npy files."""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# Where Debian's dataset-fashion-mnist package puts the IDX files.
DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
TORCHVISION_CLASSES = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST"}


class DataError(ValueError):
    """Data that cannot be used; the message is one line for the user."""


@dataclass
class Data:
    train: torch.Tensor  # uint8 [N, C, H, W]
    test: torch.Tensor  # uint8 [M, C, H, W]
    source: str  # where it came from, for the log
    train_labels: torch.Tensor | None = None  # int64 [N], where the data set has labels (the named ones)
    test_labels: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])


# The test set of a --binarize run is binarized once, with this seed whatever the training seed, so that
# every evaluation of every model (each epoch, vae-train's IWAE, vae-eval) scores the same bits.
TEST_BITS_SEED = 0


def pixels(images: torch.Tensor, binarize: bool, seed: int = TEST_BITS_SEED) -> torch.Tensor:
    """uint8 images -> float32 pixels in [0, 1], or, with `binarize`, 0/1 bits drawn once: P(1) = the grey level.

    The bits come from a CPU generator, so they are the same on every device.
    """
    x = images.cpu().float().div_(255)
    if binarize:
        x = (torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) < x).float()
    return x


def load_data(dataset: str, data_dir: str = "data", image_size: int = 28, channels: int = 1,
              test_fraction: float = 0.1, seed: int = 1, download: bool = True) -> Data:
    """Load `dataset`: a torchvision name, a folder of images, or an .npy file. A named dataset that is not on
    this machine is downloaded into data_dir, or with download=False refused (DataError)."""
    if dataset in TORCHVISION_CLASSES:
        return _load_named(dataset, Path(data_dir), download)
    path = Path(dataset)
    if not path.exists():
        names = ", ".join(TORCHVISION_CLASSES)
        raise DataError(f"dataset {dataset!r} is neither a known name ({names}) nor an existing path")
    if path.is_dir():
        images = _read_folder(path, image_size, channels)
        return _split(images, test_fraction, seed, f"image folder {path}")
    if path.suffix == ".npy":
        return _split(_read_npy(path), test_fraction, seed, f"array file {path}")
    raise DataError(f"{path} is not a folder of images or an .npy file")


def _load_named(name: str, data_dir: Path, download: bool = True) -> Data:
    # Local IDX files first (ours, torchvision's raw layout, Debian's), so nothing downloads when they are there.
    cls = TORCHVISION_CLASSES[name]
    candidates = [data_dir, data_dir / name, data_dir / cls / "raw"]
    if name in DEBIAN_DIRS:
        candidates.append(DEBIAN_DIRS[name])
    for d in candidates:
        train, test = _find_idx(d, "train"), _find_idx(d, "t10k")
        if train and test:
            return Data(_read_idx(train), _read_idx(test), f"{name} from {d}",
                        *(_read_labels(p) if p else None for p in (_find_idx(d, "train", "labels-idx1"),
                                                                    _find_idx(d, "t10k", "labels-idx1"))))
    tried = ", ".join(str(d) for d in candidates)
    if not download:
        raise DataError(f"{name} is not on this machine (looked in {tried})")
    try:
        import torchvision.datasets as tvd

        ds_train = getattr(tvd, cls)(root=str(data_dir), train=True, download=True)
        ds_test = getattr(tvd, cls)(root=str(data_dir), train=False, download=True)
    except Exception as e:  # offline, or a mirror down: one line, with what was tried
        raise DataError(f"{name} not found locally (looked in {tried}) and the download failed: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return Data(ds_train.data.unsqueeze(1).contiguous(), ds_test.data.unsqueeze(1).contiguous(),
                f"{name} via torchvision in {data_dir}", ds_train.targets.long(), ds_test.targets.long())


def select_classes(data: Data, classes: list[int] | None, exclude: list[int] | None) -> Data:
    """The images of some classes only, in both splits (vae-train --classes / --exclude-classes): the set-up of
    anomaly detection, a model trained on normal classes alone. None and None: data as it is."""
    if classes is None and exclude is None:
        return data
    if data.train_labels is None or data.test_labels is None:
        raise DataError(f"--classes and --exclude-classes need a labelled data set ({', '.join(TORCHVISION_CLASSES)}"
                        f" with its labels files); {data.source} has no labels")
    present = sorted(set(data.train_labels.tolist()))
    unknown = sorted((set(classes or []) | set(exclude or [])) - set(present))
    if unknown:
        raise DataError(f"{data.source} has no class {unknown[0]}; its classes are {present[0]} to {present[-1]}")
    keep = [c for c in present if (classes is None or c in classes) and c not in (exclude or [])]
    if not keep:
        raise DataError("--classes and --exclude-classes leave no class to train on")
    train, test = (torch.isin(labels, torch.tensor(keep)) for labels in (data.train_labels, data.test_labels))
    return Data(data.train[train], data.test[test], f"{data.source}, classes {','.join(map(str, keep))}",
                data.train_labels[train], data.test_labels[test])


def parse_classes(text: str | None, option: str) -> list[int] | None:
    """'0,3' -> [0, 3] (sorted, once each); None stays None."""
    if text is None:
        return None
    try:
        classes = sorted({int(c) for c in text.split(",")})
    except ValueError:
        raise DataError(f"{option} takes class numbers separated by commas (0,3), got {text!r}") from None
    if classes[0] < 0:
        raise DataError(f"{option} takes class numbers >= 0, got {classes[0]}")
    return classes


def _find_idx(d: Path, prefix: str, kind: str = "images-idx3") -> Path | None:
    for suffix in ("", ".gz"):
        p = d / f"{prefix}-{kind}-ubyte{suffix}"
        if p.is_file():
            return p
    return None


def _read_raw(path: Path) -> bytes:
    """An IDX file's bytes, gunzipped where its name ends in .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _read_idx(path: Path) -> torch.Tensor:
    """Read an IDX3 uint8 image file (optionally gzipped) into [N, 1, H, W]."""
    raw = _read_raw(path)
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise DataError(f"{path} is not an IDX file of uint8 images")
    n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    if len(raw) != 16 + n * h * w:
        raise DataError(f"{path} is truncated: expected {n} images of {h}x{w}")
    arr = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, h, w)
    return torch.from_numpy(arr.copy())


def _read_labels(path: Path) -> torch.Tensor:
    """Read an IDX1 uint8 labels file (optionally gzipped) into int64 [N]."""
    raw = _read_raw(path)
    if len(raw) < 8 or raw[:4] != b"\x00\x00\x08\x01" or len(raw) != 8 + int.from_bytes(raw[4:8], "big"):
        raise DataError(f"{path} is not an IDX file of uint8 labels")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=8).astype(np.int64))


def _read_folder(path: Path, size: int, channels: int) -> torch.Tensor:
    """The images below path as the runtime's commands find and read them (vae_edge.runtime.walk): recursive, in
    sorted order, hidden names skipped; converted to `channels`, resized to size x size."""
    from vae_edge.runtime.errors import RuntimeInputError
    from vae_edge.runtime.images import IMAGE_SUFFIXES, load_images
    from vae_edge.runtime.walk import files

    if channels not in (1, 3):
        raise DataError(f"--channels must be 1 or 3, got {channels}")
    paths = list(files([str(path)], None))
    if not paths:
        raise DataError(f"no images in {path} (files ending in {', '.join(IMAGE_SUFFIXES)})")
    try:
        return torch.from_numpy(load_images(paths, (channels, size, size)))
    except RuntimeInputError as e:
        raise DataError(str(e)) from None


def _read_npy(path: Path) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable .npy array: {why}") from None
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise DataError(f"{path} has shape {arr.shape}; expected N x H x W or N x C x H x W with N >= 2")
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if arr.dtype.kind != "f":
        raise DataError(f"{path} has dtype {arr.dtype}; expected uint8, or float in [0, 1]")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise DataError(f"{path} holds floats outside [0, 1] (or NaN/inf); expected uint8, or float in [0, 1]")
    # Held as uint8 like every other source: 1/255 steps are finer than the images' own noise.
    return torch.from_numpy(np.rint(arr * 255).astype(np.uint8))


def _split(images: torch.Tensor, test_fraction: float, seed: int, source: str) -> Data:
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    n = images.shape[0]
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise DataError(f"{source} has only {n} examples: too few to hold out a test split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Data(images[perm[n_test:]].contiguous(), images[perm[:n_test]].contiguous(), source)
