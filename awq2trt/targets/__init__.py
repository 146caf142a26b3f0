"""Backend lowerings of the IR graph: one module per target, registered here (one line each).

``registry.get_target(name)`` gives a target; ``registry.target_names()`` the CLI's ``--target`` choices.
"""

from awq2trt.targets.ir import IrTarget
from awq2trt.targets.ort import OrtTarget
from awq2trt.targets.ort_kernels import OrtKernelsTarget
from awq2trt.targets.registry import register
from awq2trt.targets.trt import TrtTarget
from awq2trt.targets.trt_plugin import TrtPluginTarget

register(IrTarget())
register(OrtTarget())
register(OrtKernelsTarget())
register(TrtTarget())
register(TrtPluginTarget())
