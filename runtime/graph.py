"""The graph contract (docs/format.md): the decoder maps z [batch, latent_dim] -> x [batch, C, H, W], the encoder
x [batch, C, H, W] -> mu, logvar [batch, latent_dim], each with the sizes vae.json says. Checked on anything with
onnxruntime's get_inputs() and get_outputs(): a session, or a LaterSession read from the file's bytes."""
from __future__ import annotations

from .errors import ModelFolderError


def _dims(shape) -> list:
    """Static dims as ints; symbolic (batch) dims as None."""
    return [d if isinstance(d, int) else None for d in shape]


def _show(dims: list):
    return dims[0] if len(dims) == 1 else dims


def _arity(session) -> tuple[int, int]:
    return len(session.get_inputs()), len(session.get_outputs())


def check_decoder(decoder, shape: tuple, name: str) -> tuple[str, list]:
    """(z's input name, z's dims past the batch) of a decoder that returns x of `shape`."""
    din, dout = decoder.get_inputs(), decoder.get_outputs()
    if (len(din), len(dout)) != (1, 1):
        swapped = "; encoder and decoder swapped?" if (len(din), len(dout)) == (1, 2) else ""
        raise ModelFolderError(f"{name}: the decoder file is not a decoder (z -> x): it has {len(din)} inputs and "
                               f"{len(dout)} outputs{swapped}")
    if _dims(dout[0].shape)[1:] != list(shape):
        raise ModelFolderError(f"{name}: the decoder returns x of shape {dout[0].shape} but vae.json says "
                               f"input_shape {list(shape)}")
    return din[0].name, _dims(din[0].shape)[1:]


def check_encoder(encoder, shape: tuple, name: str) -> tuple[str, list]:
    """(x's input name, mu's dims past the batch, or [mu's, logvar's] where they differ) of an encoder that takes
    x of `shape` and returns outputs named mu and logvar."""
    ein, eout = encoder.get_inputs(), encoder.get_outputs()
    if (len(ein), len(eout)) != (1, 2):
        swapped = "; encoder and decoder swapped?" if (len(ein), len(eout)) == (1, 1) else ""
        raise ModelFolderError(f"{name}: the encoder file is not an encoder (x -> mu, logvar): it has {len(ein)} "
                               f"inputs and {len(eout)} outputs{swapped}")
    names = sorted(o.name for o in eout)
    if names != ["logvar", "mu"]:
        raise ModelFolderError(f"{name}: the encoder's outputs are named {', '.join(names)}; expected mu and logvar")
    if _dims(ein[0].shape)[1:] != list(shape):
        raise ModelFolderError(f"{name}: the encoder takes x of shape {ein[0].shape} but vae.json says "
                               f"input_shape {list(shape)}")
    mu_dims, logvar_dims = (_dims(o.shape)[1:] for o in sorted(eout, key=lambda o: o.name != "mu"))
    return ein[0].name, mu_dims if mu_dims == logvar_dims else [mu_dims, logvar_dims]


def check_pair(encoder, decoder, shape: tuple, latent_dim: int, name: str) -> tuple[str | None, str]:
    """(x's name or None without an encoder, z's name), refusing networks that disagree with vae.json or each other."""
    z_name, dec_latent = check_decoder(decoder, shape, name)
    x_name, enc_latent = check_encoder(encoder, shape, name) if encoder is not None else (None, None)
    want = [latent_dim]
    if enc_latent is not None and (enc_latent != want or dec_latent != want):
        raise ModelFolderError(
            f"{name}: encoder and decoder disagree on latent_dim: the encoder gives {_show(enc_latent)}"
            f"{' (as vae.json says)' if enc_latent == want else ''}, the decoder takes {_show(dec_latent)}"
            f"{' (as vae.json says)' if dec_latent == want else ''}")
    if dec_latent != want:
        raise ModelFolderError(f"{name}: the decoder and vae.json disagree on latent_dim: vae.json says "
                               f"{latent_dim}, the decoder takes {_show(dec_latent)}")
    return x_name, z_name
