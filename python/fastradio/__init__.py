"""fastradio: a fused inference runtime for NVIDIA's C-RADIOv2 vision encoders."""

__version__ = "0.1.0"
