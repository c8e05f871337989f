"""The one training configuration. Its model fields travel into checkpoints, ONNX metadata and the runtime."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields

# Where neither --amp nor --no-amp is given, a CPU with bf16 instructions trains in bf16 when this is True
# (precision.py): bench/train_speed.py --recipes found it faster at the same test -ELBO (docs/training.md). CUDA's
# default stays float32.
BF16_ON_CPU_BY_DEFAULT = True

# Keys of the config that describe the network, as opposed to how it was trained.
MODEL_KEYS = ("arch", "input_shape", "hidden_dim", "latent_dim", "likelihood")


@dataclass
class Config:
    """Everything `vae-train` needs; defaults follow the reference recipe."""

    # model
    arch: str = "mlp"  # mlp | conv
    hidden_dim: int = 400
    latent_dim: int = 20
    likelihood: str = "bernoulli"  # bernoulli | continuous-bernoulli (likelihood.py)
    prior: str = "gaussian"  # gaussian (N(0, I)) | vamp (prior.py)
    prior_components: int = 500  # the VampPrior's pseudo-inputs K
    latent_layers: int = 1  # 2: z = [z1, z2], latent_dim / 2 each (prior.py)
    input_shape: tuple[int, int, int] = (1, 28, 28)  # C, H, W; set from the data
    # data
    dataset: str = "fashion-mnist"  # fashion-mnist | mnist | kmnist | folder | file.npy
    data_dir: str = "data"
    image_size: int | str = 28  # for image folders: N, or "HxW" (data.image_hw)
    channels: int = 1  # for image folders
    background: str = "white"  # for image folders: what transparent pixels are composited onto (white, black, #RRGGBB)
    test_fraction: float = 0.1  # for folders and .npy files
    binarize: bool = False
    classes: list[int] | None = None  # labelled data sets: train and test on these classes only
    exclude_classes: list[int] | None = None  # ... or on all but these (the anomaly set-up: docs/runtime.md)
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (to 0 at the last step)
    beta: float = 1.0
    kl_warmup: float = 0.0  # epochs over which beta ramps up from 0
    train_k: int = 1  # importance samples per image in the training objective: 1 is the ELBO, more the IWAE bound
    train_k_epochs: int = 0  # 0: train_k in every epoch; N: in the last N alone, the ELBO before (IWAE fine-tuning)
    ema: float = 0.0  # the decay of the weights' moving average that test figures and model.pt use (ema.py); 0: off
    seed: int = 1
    # machinery
    device: str = "auto"
    data_access: str = "auto"  # auto | memory | mapped: the train split read whole, or a batch at a time (data.py)
    amp: bool | None = None  # bf16 autocast over the layers; None: the device's default (precision.py)
    channels_last: bool = False  # conv: weights and batches in channels-last memory (NHWC), oneDNN's preference
    compile: bool = False
    cuda_graphs: bool = True  # on CUDA: the training step captured once as a CUDA graph and replayed (step.py)
    iwae_k: int = 0  # 0: no importance-sampled log-likelihood
    out_dir: str = "runs"
    name: str = "vae"

    def model(self) -> dict:
        """Deprecated in 0.2.0 (kept for 0.2.x): architecture()."""
        warnings.warn("Config.model() is Config.architecture() since vae-edge 0.2.0", DeprecationWarning, stacklevel=2)
        return self.architecture()

    def architecture(self) -> dict:
        """The architecture facts, as stored in checkpoints and ONNX metadata (vae.json's "model")."""
        d = asdict(self)
        facts = {k: (list(d[k]) if k == "input_shape" else d[k]) for k in MODEL_KEYS}
        if self.prior != "gaussian" or self.latent_layers != 1:  # named only where they differ from N(0, I), 1 layer
            facts.update(prior=self.prior, prior_components=self.prior_components if self.prior == "vamp" else None,
                         latent_layers=self.latent_layers)
        return facts

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "input_shape" in kw:
            kw["input_shape"] = tuple(int(v) for v in kw["input_shape"])
        return cls(**kw)
