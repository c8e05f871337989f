"""Datasets as uint8 [N, C, H, W]: torchvision's digit sets, image folders (decoded once into a cache:
image_cache.py) and .npy files; a folder's or a uint8 .npy's train split can stay memory-mapped (Mapped)."""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vae_edge.runtime.errors import one_line

# Where Debian's dataset-fashion-mnist package puts the IDX files.
DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
TORCHVISION_CLASSES = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST"}


class DataError(ValueError):
    """Data that cannot be used; the message is one line for the user."""


class Mapped:
    """The train split of a memory-mapped uint8 array [N, C, H, W], read a batch at a time: its pages belong to the
    file (the kernel's page cache, which it can drop), not to this process's own memory, whatever the data's size."""

    def __init__(self, array: np.ndarray, rows: np.ndarray):
        self.array, self.rows = array, rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.array.shape[1:]))

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows idx of the split (a CPU long tensor), read from the file into a fresh uint8 tensor."""
        return torch.from_numpy(self.array[self.rows[idx.numpy()]])

    def tensor(self) -> torch.Tensor:
        """The whole split, read into memory."""
        return torch.from_numpy(self.array[self.rows])


class MappedPixels:
    """pixels(split.tensor(), binarize) on `device`, computed a slice at a time from a Mapped split, so that the test
    figures of a set read from its map need no copy of it: the same values, bits included (the CPU generator draws
    them in order, so a slice's bits are those the whole set's draw gives its rows). Rows start..stop of the split."""

    def __init__(self, split: Mapped, binarize: bool, device: torch.device, start: int = 0, stop: int | None = None):
        self.split, self.binarize, self.device = split, binarize, device
        self.start, self.stop = start, len(split) if stop is None else stop
        self.shape = torch.Size((self.stop - self.start, *split.shape[1:]))
        self._bits: torch.Generator | None = None
        self._next = -1  # the row whose bits the generator draws next

    def __getitem__(self, s: slice) -> torch.Tensor:
        a, b, step = s.indices(self.shape[0])
        if step != 1:
            raise IndexError("MappedPixels takes slices of consecutive rows")
        a, b = self.start + a, self.start + max(a, b)
        x = self.split.take(torch.arange(a, b)).float().div_(255)
        if self.binarize:
            if self._bits is None or self._next != a:
                self._bits = torch.Generator().manual_seed(TEST_BITS_SEED)
                skip = a * x[0].numel() if len(x) else 0
                for i in range(0, skip, 1 << 24):  # the values the rows before `a` take, drawn and dropped
                    torch.rand(min(1 << 24, skip - i), generator=self._bits)
            x = (torch.rand(x.shape, generator=self._bits) < x).float()
            self._next = b
        return x.to(self.device)

    def tensor_split(self, parts: int) -> list["MappedPixels"]:
        """As torch.tensor_split: the first n % parts parts one row longer."""
        n, bounds = self.shape[0], [0]
        for i in range(parts):
            bounds.append(bounds[-1] + n // parts + (i < n % parts))
        return [MappedPixels(self.split, self.binarize, self.device, self.start + a, self.start + b)
                for a, b in zip(bounds, bounds[1:])]


@dataclass
class Data:
    train: torch.Tensor | Mapped  # uint8 [N, C, H, W]; Mapped only where load_data was asked to keep it so
    test: torch.Tensor | Mapped  # uint8 [M, C, H, W]
    source: str  # where it came from, for the log
    train_labels: torch.Tensor | None = None  # int64 [N], where the data set has labels (the named ones)
    test_labels: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    def test_tensor(self) -> torch.Tensor:
        """The test split in memory (read from its map where it is one), for what scores the test split alone."""
        return self.test.tensor() if isinstance(self.test, Mapped) else self.test


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


def load_data(dataset: str, data_dir: str = "data", image_size: int | str = 28, channels: int = 1,
              test_fraction: float = 0.1, seed: int = 1, download: bool = True, *, background: str = "white",
              cache_dir: str | None = None, strict: bool = False, keep_mapped: bool = False,
              say: Callable[[str], None] = lambda _: None, progress: bool = False,
              lap: Callable[[str], None] = lambda _: None) -> Data:
    """Load `dataset`: a torchvision name, a folder of images, or an .npy file. A named dataset that is not on
    this machine is downloaded into data_dir, or with download=False refused (DataError).

    A folder is read through its decoded cache in cache_dir (image_cache.py; `say` gets its lines, `progress` a bar),
    each image by the runtime's rule at image_size (N or HxW) and channels, transparency composited onto
    `background`; strict: an unreadable file stops the run. keep_mapped: both splits of a folder or of a uint8 .npy
    stay memory-mapped (Mapped); otherwise every split is a tensor in memory. lap: the time line's, called once
    images are decoded."""
    if dataset in TORCHVISION_CLASSES:
        return _load_named(dataset, Path(data_dir), download)
    path = Path(dataset)
    if not path.exists():
        names = ", ".join(TORCHVISION_CLASSES)
        raise DataError(f"dataset {dataset!r} is neither a known name ({names}) nor an existing path")
    if path.is_dir():
        images = _read_folder(path, image_hw(image_size), channels, background, cache_dir, strict, say, progress,
                              lap)
        return _split(images, test_fraction, seed, f"image folder {path}", keep_mapped)
    if path.suffix == ".npy":
        return _split(_read_npy(path), test_fraction, seed, f"array file {path}", keep_mapped)
    raise DataError(f"{path} is not a folder of images or an .npy file")


def image_hw(size: int | str) -> tuple[int, int]:
    """--image-size: N (N x N) or HxW (as 64x48), to (H, W)."""
    text = str(size).strip().lower()
    parts = text.split("x")
    if len(parts) in (1, 2) and all(p.isdigit() and int(p) > 0 for p in parts):
        return (int(parts[0]), int(parts[-1]))
    raise DataError(f"--image-size takes N or HxW in pixels (28, 64x48), got {size!r}")


def hold_in_memory(access: str, data: Data, device: torch.device) -> bool:
    """--data-access: whether the train split is read into memory (on the device) or read from its map a batch at a
    time. auto: into memory where it takes at most MEMORY_SHARE of the memory available (the host's, and a GPU's
    free memory), which is faster (docs/training.md); data that is not a map is always in memory."""
    if access not in DATA_ACCESS:
        raise DataError(f"unknown --data-access {access!r}; choose one of {', '.join(DATA_ACCESS)}")
    if not isinstance(data.train, Mapped) or access == "memory":
        return True
    if access == "mapped":
        return False
    available = _host_available()
    if device.type == "cuda":
        available = min(available, torch.cuda.mem_get_info(device)[0])
    return data.train.nbytes <= MEMORY_SHARE * available


DATA_ACCESS = ("auto", "memory", "mapped")
MEMORY_SHARE = 0.5  # of the available memory, that a train split held whole may take (auto)


def _host_available() -> int:
    """MemAvailable from /proc/meminfo (Linux), else the physical pages free."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


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
                        f"{one_line(e)}") from None
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


def _read_folder(path: Path, hw: tuple[int, int], channels: int, background: str, cache_dir: str | None,
                 strict: bool, say, progress: bool, lap) -> np.ndarray:
    """The images below path as the runtime's commands find and read them (vae_edge.runtime.walk and read_image):
    recursive, in sorted order, hidden names skipped; from the folder's decoded cache (memory-mapped)."""
    from vae_edge.runtime.errors import RuntimeInputError

    from .image_cache import cache_root, folder_images

    if channels not in (1, 3):
        raise DataError(f"--channels must be 1 or 3, got {channels}")
    try:
        return folder_images(path, (channels, *hw), background, cache_root(cache_dir), strict, say, progress,
                             lap=lap).images
    except RuntimeInputError as e:
        raise DataError(str(e)) from None


def _read_npy(path: Path) -> np.ndarray:
    """The array of an .npy as uint8 [N, C, H, W]: a uint8 file memory-mapped, floats in [0, 1] read and rounded."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise DataError(f"{path} is not a readable .npy array: {one_line(e)}") from None
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise DataError(f"{path} has shape {arr.shape}; expected N x H x W or N x C x H x W with N >= 2")
    if arr.dtype == np.uint8:
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    if arr.dtype.kind != "f":
        raise DataError(f"{path} has dtype {arr.dtype}; expected uint8, or float in [0, 1]")
    arr = np.asarray(arr)
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise DataError(f"{path} holds floats outside [0, 1] (or NaN/inf); expected uint8, or float in [0, 1]")
    # Held as uint8 like every other source: 1/255 steps are finer than the images' own noise.
    return np.rint(arr * 255).astype(np.uint8)


def _split(images: np.ndarray, test_fraction: float, seed: int, source: str, keep_mapped: bool = False) -> Data:
    """A random test split (seeded); the train split stays a Mapped of `images` with keep_mapped, else is read."""
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    n = images.shape[0]
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise DataError(f"{source} has only {n} examples: too few to hold out a test split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    train, test = Mapped(images, perm[n_test:]), Mapped(images, perm[:n_test])
    return Data(train, test, source) if keep_mapped else Data(train.tensor(), test.tensor(), source)
