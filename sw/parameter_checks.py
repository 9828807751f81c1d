"""Checks of library parameters, raising the errors the style asks for (name and value)."""

__all__ = ["check_positive_integer"]


def check_positive_integer(name, value):
    """Raise ``TypeError`` unless ``value`` is an int (not a bool) of at least 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
