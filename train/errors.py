"""A training run that cannot start or go on; the message is one line for the user."""


class TrainError(ValueError):
    """A run that cannot start; the message is one line for the user."""
