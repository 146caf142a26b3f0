"""The Triton Python-backend model ``awq2trt triton`` writes: text in, text out, over an exported folder.

Triton loads this file as ``NAME/1/model.py``.  Its config's parameters say where the exported folder
(``model_folder``) and the copied awq2trt modules (``code_folder``) are, relative to the model's folder.  The
decoupled model (``NAME``) sends one response per piece of text and then an empty final one; the other
(``NAME_infer``) sends the whole text once.  A bad request gets an error response with awq2trt's one-line
message; the model keeps serving.  Requests run one after another on each instance (the next slice batches
their decode steps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUT = "text_output"
INPUTS = ("text_input", "max_tokens", "temperature", "top_k", "top_p", "seed", "stop")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        home = Path(args["model_repository"])  # this model's folder: NAME/ or NAME_infer/
        code = str((home / parameters["code_folder"]).resolve())
        if code not in sys.path:
            sys.path.insert(0, code)  # the awq2trt modules copied beside the weights, whatever else is installed
        from awq2trt.errors import Awq2TrtError
        from awq2trt.triton.serving import TextGenerator

        self.user_error = Awq2TrtError
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.generator = TextGenerator.open(
            str((home / parameters["model_folder"]).resolve()),
            provider=parameters.get("provider", "cpu"),
            default_max_tokens=int(parameters.get("max_tokens", "64")),
        )

    def execute(self, requests: list[Any]) -> list[Any] | None:
        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        return [self._answer(request) for request in requests]

    # -- one request ------------------------------------------------------------------------------------------

    def _parse(self, request: Any) -> Any:
        inputs = {}
        for name in INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            inputs[name] = None if tensor is None else tensor.as_numpy()
        parameters = json.loads(request.parameters() or "{}")
        return self.generator.parse(inputs, parameters)

    def _answer(self, request: Any) -> Any:
        try:
            parsed = self._parse(request)
            outcome = self.generator.run(parsed, lambda piece: None)
        except self.user_error as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        return pb_utils.InferenceResponse(output_tensors=[_text(outcome.text)])

    def _stream(self, request: Any) -> None:
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            parsed = self._parse(request)
        except self.user_error as error:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))), flags=final)
            return

        def emit(piece: str) -> None:
            sender.send(pb_utils.InferenceResponse(output_tensors=[_text(piece)]))

        try:
            self.generator.run(parsed, emit, cancelled=lambda: _cancelled(request, sender))
        except self.user_error as error:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))), flags=final)
            return
        sender.send(flags=final)

    def finalize(self) -> None:
        self.generator = None


def _text(text: str) -> Any:
    return pb_utils.Tensor(OUTPUT, np.array([text.encode("utf-8")], dtype=np.object_))


def _cancelled(request: Any, sender: Any) -> bool:
    """Whether the client cancelled or went away (both ask Triton; older servers lack one or the other)."""
    for source in (request, sender):
        check = getattr(source, "is_cancelled", None)
        if check is not None and check():
            return True
    return False
