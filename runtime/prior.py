"""A format-2 folder's learned prior in the runtime: prior.onnx turns noise into the decoder's z, so that sample()
needs nothing but the exported files (score.onnx, the IWAE log-weights of images, is score.py's).

The noise comes from runtime/random.py (docs/noise.md): eps ~ N(0, I) on stream eps, the numbers a Gaussian-prior
model's sample() decodes as they are; u ~ U[0, 1) (a mixture's component, floor(u K)) on stream u. temperature
scales eps, never u.
"""
from __future__ import annotations

import numpy as np

from . import graph
from .folder import ModelFolder


def describe(meta: dict) -> str:
    """One line for vae-info: which prior, how many latent layers."""
    p = meta.get("prior")
    if not p:
        return "gaussian: N(0, I), one latent layer"
    name = f"vamp: a mixture of the posteriors at {p['components']} pseudo-inputs" if p["name"] == "vamp" \
        else "gaussian: N(0, I)"
    layers = (f"two latent layers, z = [z1, z2] of {p['layer_sizes'][0]} + {p['layer_sizes'][1]}"
              if p["latent_layers"] == 2 else "one latent layer")
    return f"{name}, {layers} (prior.onnx: {', '.join(p['sample']['inputs'])} -> z)"


class Prior:
    """prior.onnx's session (made at load), held to its contract (graph.py)."""

    def __init__(self, folder: ModelFolder, sampler):
        assert folder.prior is not None  # VAE.load makes a Prior for a format that loads prior.onnx only
        self.spec = folder.prior
        self.inputs = list(self.spec["sample"]["inputs"])
        self._latent = folder.latent_dim
        self._sampler = graph.check_prior(sampler, self.inputs, self._latent, sampler.name)

    @property
    def name(self) -> str:
        return self.spec["name"]

    def z(self, eps: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """The decoder's z [n, latent_dim] for noise eps [n, latent_dim] (and u [n] for a mixture)."""
        feed = {"eps": np.ascontiguousarray(eps, dtype=np.float32)}
        if "u" in self.inputs:
            feed["u"] = np.ascontiguousarray(u, dtype=np.float32)
        return self._sampler.run(["z"], feed, [(len(eps), self._latent)])[0]
