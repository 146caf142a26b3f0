#include "awq_gemm_plugin.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <utility>

#include "awq2trt_cuda.h"

namespace awq2trt {

AwqGemmPlugin::AwqGemmPlugin(std::string name, AwqGemmConfig const& config)
    : name_(std::move(name)), config_(config) {}

AwqGemmPlugin::AwqGemmPlugin(AwqGemmPlugin const& other)
    : nvinfer1::IPluginV3(),
      nvinfer1::IPluginV3OneCore(),
      nvinfer1::IPluginV3OneBuild(),
      nvinfer1::IPluginV3OneRuntime(),
      name_(other.name_),
      config_(other.config_) {}

nvinfer1::IPluginCapability* AwqGemmPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* AwqGemmPlugin::clone() noexcept {
  try {
    return new AwqGemmPlugin(*this);
  } catch (...) {
    return nullptr;
  }
}

int32_t AwqGemmPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nb_inputs,
                                       nvinfer1::DynamicPluginTensorDesc const*, int32_t nb_outputs) noexcept {
  if (nb_outputs != 1 || nb_inputs != config_.nb_inputs()) return -1;
  nvinfer1::Dims dims[5];
  for (int32_t i = 0; i < nb_inputs; ++i) dims[i] = in[i].desc.dims;
  std::string const problem = check_input_dims(config_, dims, nb_inputs);
  if (!problem.empty()) {
    log_error("AwqGemm " + name_ + ": " + problem);
    return -1;
  }
  // Fix the SM count that sizes split-K now, on the build's device, so the runtime asks for what was reserved.
  if (config_.sm_count == 0) config_.sm_count = current_sm_count();
  return 0;
}

int32_t AwqGemmPlugin::getOutputDataTypes(nvinfer1::DataType* output_types, int32_t nb_outputs,
                                          nvinfer1::DataType const* input_types, int32_t nb_inputs) const noexcept {
  if (nb_outputs != 1 || nb_inputs < 1) return -1;
  output_types[0] = input_types[0];
  return 0;
}

int32_t AwqGemmPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nb_inputs,
                                       nvinfer1::DimsExprs const*, int32_t, nvinfer1::DimsExprs* outputs,
                                       int32_t nb_outputs, nvinfer1::IExprBuilder& expr_builder) noexcept {
  if (nb_inputs != config_.nb_inputs() || nb_outputs != 1 || inputs[0].nbDims < 1) return -1;
  outputs[0] = inputs[0];  // Y = A's shape with K replaced by N
  outputs[0].d[inputs[0].nbDims - 1] = expr_builder.constant(config_.n);
  return 0;
}

bool AwqGemmPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* in_out,
                                              int32_t nb_inputs, int32_t nb_outputs) noexcept {
  if (nb_inputs + nb_outputs > 6) return false;
  nvinfer1::PluginTensorDesc descs[6];
  for (int32_t i = 0; i <= pos && i < nb_inputs + nb_outputs; ++i) descs[i] = in_out[i].desc;
  return supports_format(config_, pos, descs, nb_inputs, nb_outputs);
}

size_t AwqGemmPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nb_inputs,
                                       nvinfer1::DynamicPluginTensorDesc const*, int32_t) const noexcept {
  if (nb_inputs < 1) return 0;
  // Split-K partials for the largest need over the profile's M range (not monotonic in M: split-K turns off as M
  // grows, so every M is tried; the function is arithmetic only).
  int64_t const lo = std::max<int64_t>(1, rows_of(inputs[0].min));
  int64_t const hi = std::max<int64_t>(lo, rows_of(inputs[0].max));
  int const sms = sm_count();
  size_t most = 0;
  for (int64_t m = lo; m <= hi; ++m) {
    most = std::max(most, awq2trt_int4_gemm_workspace_size(m, config_.n, config_.k, sms));
    if (awq2trt_int4_split_k(m, config_.n, config_.k, sms) == 1 && m >= 64) break;  // no split beyond here
  }
  return most;
}

int32_t AwqGemmPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nb_inputs,
                                     nvinfer1::PluginTensorDesc const*, int32_t nb_outputs) noexcept {
  if (nb_inputs != config_.nb_inputs() || nb_outputs != 1) return -1;
  return in[0].dims.d[in[0].dims.nbDims - 1] == config_.k ? 0 : -1;
}

int32_t AwqGemmPlugin::enqueue(nvinfer1::PluginTensorDesc const* input_desc, nvinfer1::PluginTensorDesc const*,
                               void const* const* inputs, void* const* outputs, void* workspace,
                               cudaStream_t stream) noexcept {
  int64_t const m = rows_of(input_desc[0].dims);
  if (m == 0) return 0;
  awq2trt_gemm_args args{};
  args.m = m;
  args.n = config_.n;
  args.k = config_.k;
  args.group_size = config_.group_size;
  args.dtype = config_.dtype == 1 ? AWQ2TRT_BF16 : AWQ2TRT_FP16;
  args.a = inputs[0];
  args.codes = static_cast<int32_t const*>(inputs[1]);
  args.scales = inputs[2];
  args.zeros = config_.has_zero_points ? static_cast<uint8_t const*>(inputs[config_.zeros_index()]) : nullptr;
  args.bias = config_.has_bias ? inputs[config_.bias_index()] : nullptr;
  args.y = outputs[0];
  int const sms = sm_count();
  size_t const need = awq2trt_int4_gemm_workspace_size(m, config_.n, config_.k, sms);
  awq2trt_status const status = awq2trt_int4_gemm(&args, workspace, need, sms, stream);
  if (status != AWQ2TRT_OK) {
    log_error("AwqGemm " + name_ + ": kernel launch failed with status " + std::to_string(status));
    return -1;
  }
  return 0;
}

nvinfer1::IPluginV3* AwqGemmPlugin::attachToContext(nvinfer1::IPluginResourceContext*) noexcept { return clone(); }

nvinfer1::PluginFieldCollection const* AwqGemmPlugin::getFieldsToSerialize() noexcept {
  try {
    if (config_.sm_count == 0) config_.sm_count = current_sm_count();
    serialized_ = std::make_unique<FieldStore>(config_);
    return serialized_->collection();
  } catch (...) {
    return nullptr;
  }
}

int32_t AwqGemmPlugin::sm_count() const { return config_.sm_count > 0 ? config_.sm_count : current_sm_count(); }

int32_t current_sm_count() noexcept {
  int device = 0;
  int count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a machine without a GPU
    return 0;
  }
  return count;
}

}  // namespace awq2trt
