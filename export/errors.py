"""The export's errors: each message is one line for the user."""


class ExportError(ValueError):
    """An export that cannot go ahead; the message is one line for the user."""


class ParityError(ExportError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__
