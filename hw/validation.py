"""Parameter checks shared by the generators, with messages that name the parameter."""

__all__ = ["check_int"]


def check_int(name, value, low, high):
    """Return ``value`` if it is an integer in ``[low, high]``, else raise ``TypeError``.

    ``bool`` is rejected although it is an ``int`` subclass: ``rows=True`` is a mistake.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TypeError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value

