"""The Triton Python-backend model ``NAME_infer``: plain (one-response) infer over the streaming model ``NAME``.

Triton rejects plain infer on a decoupled model, so the repository has a second model for it.  This one holds no
weights: it forwards each request to ``NAME`` (its config parameter ``forward_to``) through Triton's business
logic scripting (BLS) and joins the streamed pieces into one response.  So a repository loads the weights once,
and plain requests join the same batched decode steps as streaming ones.  It imports only numpy and Triton's
utilities, and nothing of awq2trt.

Every request of one ``execute`` call is sent before any answer is read, so they decode together; the repository
gives this model as many instances as ``NAME`` has batch slots, so that many plain requests can wait at once.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUT = "text_output"
INPUTS = ("text_input", "max_tokens", "temperature", "top_k", "top_p", "seed", "stop")
# BLS parameters take only bool, int and str values, so a request's parameters (which may hold floats such as
# temperature) travel as their JSON text under this one key; the streaming model unpacks it (model.py).
FORWARDED_PARAMETERS = "awq2trt_forwarded_parameters"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.target = config["parameters"]["forward_to"]["string_value"]

    def execute(self, requests: list[Any]) -> list[Any]:
        pending = [self._send(request) for request in requests]
        return [self._collect(answer) for answer in pending]

    def _send(self, request: Any) -> Any:
        """The streaming model's responses to *request* (an iterator), or the exception that stopped it."""
        inputs = [t for t in (pb_utils.get_input_tensor_by_name(request, n) for n in INPUTS) if t is not None]
        parameters = request.parameters() or "{}"
        forwarded = pb_utils.InferenceRequest(
            model_name=self.target,
            inputs=inputs,
            requested_output_names=[OUTPUT],
            parameters={} if parameters == "{}" else {FORWARDED_PARAMETERS: parameters},
        )
        try:
            return forwarded.exec(decoupled=True)
        except Exception as error:  # the streaming model is not there (unloaded): this request fails
            return error

    def _collect(self, answer: Any) -> Any:
        if isinstance(answer, Exception):
            return _error(str(answer))
        pieces: list[str] = []
        try:
            for response in answer:
                if response.has_error():
                    return _error(response.error().message())
                tensor = pb_utils.get_output_tensor_by_name(response, OUTPUT)
                if tensor is not None:
                    pieces.extend(value.decode("utf-8") for value in tensor.as_numpy().ravel())
        except Exception as error:
            return _error(str(error))
        text = np.array(["".join(pieces).encode("utf-8")], dtype=np.object_)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT, text)])


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(" ".join(message.split()) or "request failed"))
