"""Run an AutoAWQ GEMM checkpoint through transformers + gptqmodel (an independent loader); save its logits.

Usage: python gptqmodel_logits.py CHECKPOINT INPUT_IDS.npy OUT.npy
Runs in its own process: importing gptqmodel changes process-wide settings.  The pure-torch AWQ kernel is
pinned (``torch_awq``: dequantize in fp16, then matmul) because gptqmodel's automatic choice depends on the
CPU and its version.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AwqConfig

folder, ids_path, out_path = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(
    folder, device_map="cpu", dtype=torch.float16, quantization_config=AwqConfig(bits=4, backend="torch_awq")
).eval()
layer = model.model.layers[0].self_attn.q_proj
assert type(layer).__name__ == "AwqTorchLinear", type(layer)
with torch.inference_mode():
    logits = model(input_ids=torch.from_numpy(np.load(ids_path))).logits.float().numpy()
np.save(out_path, logits)
