"""fastradio: a fused inference runtime for NVIDIA's C-RADIOv2 vision encoders.

    import fastradio
    model = fastradio.load("C-RADIOv2-B")          # device/dtype defaults: see load()
    summary, features = model(pixel_values)        # RGB in [0, 1], (B, 3, H, W)
"""

__version__ = "0.1.0"

from ._dist import check_single_distribution  # noqa: E402

check_single_distribution()  # fastradio and fastradio-cu12/-cu13 over each other: refuse, with the fix

from .api import ModelInfo, list_models, load  # noqa: E402
from .model import RadioModel, RadioOutput, Resolution  # noqa: E402
from .graphs import CudaGraphRunner  # noqa: E402

__all__ = ["load", "list_models", "ModelInfo", "RadioModel", "RadioOutput", "Resolution", "CudaGraphRunner", "__version__"]
