"""The export's errors: each message is one line for the user."""


class ExportError(ValueError):
    """An export that cannot go ahead; the message is one line for the user."""


class ParityError(ExportError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""
