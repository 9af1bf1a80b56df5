"""Pure math: no config objects, no I/O, time-major tensors ``[T, B, ...]``."""
