"""Errors the library raises that callers may want to catch by type."""


class NonFiniteLossError(FloatingPointError):
    """The loss is NaN or infinite on some batch (training, a curvature product, eps)."""


class DeviceMemoryError(MemoryError):
    """A computation would not fit in the device's free memory (said before it starts)."""
