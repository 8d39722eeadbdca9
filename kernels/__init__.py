"""Triton kernels of fastradio, one file per op (shipped in the wheel as ``fastradio.kernels``).

Only ``fastradio.backends.triton`` imports this package. Kernels are private (``_<op>_kernel``);
each file exposes a launcher with the op's name that takes torch tensors.
"""
