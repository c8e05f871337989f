"""The graph contract (docs/format.md): the decoder maps z [batch, latent_dim] -> x [batch, C, H, W], the encoder
x [batch, C, H, W] -> mu, logvar [batch, latent_dim], each with the sizes vae.json says. Checked on anything with
onnxruntime's get_inputs() and get_outputs(): a session, or a LazySession read from the file's bytes.

A format-2 folder's prior.onnx and score.onnx are held to theirs when their sessions are made (rule G2): the
inputs and outputs by name, float32, with the sizes vae.json says and symbolic batch (and samples) axes."""
from __future__ import annotations

from .errors import ModelFolderError
from .rules import message


def _dims(shape) -> list:
    """Static dims as ints; symbolic (batch) dims as None."""
    return [d if isinstance(d, int) else None for d in shape]


def _latent_dims(dims: list):
    """A latent axis as messages show it: its size alone where it has one axis past the batch."""
    return dims[0] if len(dims) == 1 else dims


def check_decoder(decoder, shape: tuple, name: str) -> tuple[str, list]:
    """(z's input name, z's dims past the batch) of a decoder that returns x of `shape`."""
    din, dout = decoder.get_inputs(), decoder.get_outputs()
    if (len(din), len(dout)) != (1, 1):
        swapped = message("swapped") if (len(din), len(dout)) == (1, 2) else ""
        raise ModelFolderError(message("not_decoder", path=name, inputs=len(din), outputs=len(dout), swapped=swapped))
    if _dims(dout[0].shape)[1:] != list(shape):
        raise ModelFolderError(message("decoder_shape", path=name, got=dout[0].shape, shape=list(shape)))
    return din[0].name, _dims(din[0].shape)[1:]


def check_encoder(encoder, shape: tuple, name: str) -> tuple[str, list]:
    """(x's input name, mu's dims past the batch, or [mu's, logvar's] where they differ) of an encoder that takes
    x of `shape` and returns outputs named mu and logvar."""
    ein, eout = encoder.get_inputs(), encoder.get_outputs()
    if (len(ein), len(eout)) != (1, 2):
        swapped = message("swapped") if (len(ein), len(eout)) == (1, 1) else ""
        raise ModelFolderError(message("not_encoder", path=name, inputs=len(ein), outputs=len(eout), swapped=swapped))
    names = sorted(o.name for o in eout)
    if names != ["logvar", "mu"]:
        raise ModelFolderError(message("encoder_names", path=name, names=", ".join(names)))
    if _dims(ein[0].shape)[1:] != list(shape):
        raise ModelFolderError(message("encoder_shape", path=name, got=ein[0].shape, shape=list(shape)))
    mu_dims, logvar_dims = (_dims(o.shape)[1:] for o in sorted(eout, key=lambda o: o.name != "mu"))
    return ein[0].name, mu_dims if mu_dims == logvar_dims else [mu_dims, logvar_dims]


def check_pair(encoder, decoder, shape: tuple, latent_dim: int, name: str) -> tuple[str | None, str]:
    """(x's name or None without an encoder, z's name), refusing networks that disagree with vae.json or each other."""
    z_name, dec_latent = check_decoder(decoder, shape, name)
    x_name, enc_latent = check_encoder(encoder, shape, name) if encoder is not None else (None, None)
    want = [latent_dim]
    if enc_latent is not None and (enc_latent != want or dec_latent != want):
        raise ModelFolderError(
            f"{name}: encoder and decoder disagree on latent_dim: the encoder gives {_latent_dims(enc_latent)}"
            f"{' (as vae.json says)' if enc_latent == want else ''}, the decoder takes {_latent_dims(dec_latent)}"
            f"{' (as vae.json says)' if dec_latent == want else ''}")
    if dec_latent != want:
        raise ModelFolderError(message("decoder_latent", path=name, latent=latent_dim, got=_latent_dims(dec_latent)))
    return x_name, z_name


def _type(arg) -> str:
    """A NodeArg's element type as ONNX names it: tensor(float) -> float32, tensor(int64) -> int64."""
    name = str(getattr(arg, "type", "")).removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(name, name)


def _fits(shape, want: list) -> bool:
    """shape (ints, names, None) against want: an int where want has one, a symbolic axis where want names one."""
    return len(shape) == len(want) and all(d == w if isinstance(w, int) else not isinstance(d, int)
                                           for d, w in zip(shape, want))


def _describe(args) -> str:
    return ", ".join(f"{a.name} {_type(a)} [{', '.join(map(str, a.shape))}]" for a in args) or "nothing"


def check_graph(session, inputs: dict, outputs: dict, what: str, name: str):
    """The session, if its inputs and outputs are exactly `inputs` and `outputs` (name -> dims: ints and the
    names of symbolic axes), each float32; else a ModelFolderError naming the file (name) and both signatures."""
    def fit(args, want: dict) -> bool:
        return sorted(a.name for a in args) == sorted(want) and \
            all(_type(a) == "float32" and _fits(a.shape, want[a.name]) for a in args)

    got_in, got_out = session.get_inputs(), session.get_outputs()
    if fit(got_in, inputs) and fit(got_out, outputs):
        return session
    want = lambda args: ", ".join(f"{k} float32 [{', '.join(map(str, v))}]" for k, v in args.items())  # noqa: E731
    raise ModelFolderError(message("not_described", path=name, what=what, takes=_describe(got_in),
                                   gives=_describe(got_out), want_in=want(inputs), want_out=want(outputs)))


def check_prior(session, noise: list, latent_dim: int, name: str):
    """prior.onnx: the noise vae.json's prior.sample.inputs names (eps [batch, latent_dim], u [batch]) -> z."""
    dims = {"eps": ["batch", latent_dim], "u": ["batch"]}
    return check_graph(session, {k: dims[k] for k in noise}, {"z": ["batch", latent_dim]}, "prior", name)


def check_score(session, shape: tuple, latent_dim: int, name: str):
    """score.onnx: x [batch, C, H, W], eps [samples, batch, latent_dim] -> log_w [samples, batch]."""
    return check_graph(session, {"x": ["batch", *shape], "eps": ["samples", "batch", latent_dim]},
                       {"log_w": ["samples", "batch"]}, "score graph", name)
