"""TensorRT: ``awq2trt build`` (an exported ``trt`` folder -> engine + ``engine.json``) and what runtimes read.

``engine_info`` (the engine's description, standard library only) and ``profiles`` (the optimization profiles,
pure) import neither TensorRT nor numpy; ``builder`` imports ``tensorrt`` inside ``build_engine`` only, so this
package imports on machines without it.
"""

from awq2trt.tensorrt.engine_info import (
    ENGINE_INFO_FILE,
    FORMAT_VERSION,
    EngineInfo,
    Profile,
    ShapeRange,
    check_tensorrt_version,
)

__all__ = ["ENGINE_INFO_FILE", "FORMAT_VERSION", "EngineInfo", "Profile", "ShapeRange", "check_tensorrt_version"]
