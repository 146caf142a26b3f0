// AwqGemm: TensorRT IPluginV3 over plugins/cuda's int4 dequant-GEMM (Y = A @ W.T (+ bias), W int4 group-wise).
//
// Weights are constant plugin *inputs* (ONNX initializers feeding the node), not serialized fields: fields come
// from ONNX attributes, which live inside the protobuf and so cannot exceed its 2 GB limit or use external
// data, while initializers go to external data like every other weight of the export; TensorRT then owns the
// device copies (one per engine, refittable, counted in its memory reports), and the plugin object stays a few
// integers that serialize in any engine.  Inputs: A [..., K] (fp16/bf16), codes int32 [N_pad * K / 8], scales
// [K / G, N_pad] (A's type), zeros [K / G, N_pad / 4] int32 holding the
// uint8 zero-point codes (when has_zero_points), bias [N] (when has_bias); output
// Y [..., N] in A's type.  The layout is awq2trt/cuda_layout.py's.
#pragma once

#include <NvInferRuntime.h>

#include <memory>
#include <string>

#include "awq_gemm_config.h"

namespace awq2trt {

class AwqGemmPlugin : public nvinfer1::IPluginV3,
                      public nvinfer1::IPluginV3OneCore,
                      public nvinfer1::IPluginV3OneBuild,
                      public nvinfer1::IPluginV3OneRuntime {
 public:
  AwqGemmPlugin(std::string name, AwqGemmConfig const& config);
  AwqGemmPlugin(AwqGemmPlugin const& other);
  AwqGemmPlugin& operator=(AwqGemmPlugin const&) = delete;
  ~AwqGemmPlugin() override = default;

  AwqGemmConfig const& config() const { return config_; }

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override { return kPluginName; }
  char const* getPluginVersion() const noexcept override { return kPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  // IPluginV3OneBuild
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nb_inputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nb_outputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* output_types, int32_t nb_outputs,
                             nvinfer1::DataType const* input_types, int32_t nb_inputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nb_inputs, nvinfer1::DimsExprs const* shape_inputs,
                          int32_t nb_shape_inputs, nvinfer1::DimsExprs* outputs, int32_t nb_outputs,
                          nvinfer1::IExprBuilder& expr_builder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* in_out, int32_t nb_inputs,
                                 int32_t nb_outputs) noexcept override;
  int32_t getNbOutputs() const noexcept override { return 1; }
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nb_inputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nb_outputs) const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nb_inputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nb_outputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* input_desc, nvinfer1::PluginTensorDesc const* output_desc,
                  void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  int32_t sm_count() const;  // the fixed count, or the current device's

  std::string name_;
  AwqGemmConfig config_;
  std::unique_ptr<FieldStore> serialized_;  // what getFieldsToSerialize last returned (must stay alive)
};

// The current device's multiprocessor count, or 0 without a device (the test binary, CI).
int32_t current_sm_count() noexcept;

// Reports through the logger TensorRT handed over (setLoggerFinder), if any.
void log_error(std::string const& message) noexcept;

}  // namespace awq2trt
