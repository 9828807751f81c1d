"""Checks of library parameters, raising the errors the style asks for (name and value)."""

__all__ = ["check_integer", "check_positive_integer", "check_probability"]


def check_positive_integer(name, value):
    """Raise ``TypeError`` unless ``value`` is an int (not a bool) of at least 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")


def check_probability(name, value):
    """Raise ``TypeError`` unless ``value`` is a number (not a bool) between 0 and 1."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise TypeError(f"{name} must be a number between 0 and 1, not {value!r}")


def check_integer(name, value):
    """Raise ``TypeError`` unless ``value`` is an int (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
