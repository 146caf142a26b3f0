// The AwqGemm plugin's fields and its shape and format rules, apart from the plugin object so that the test
// binary (test/plugin_logic_test.cc) checks them without a GPU or a TensorRT library.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace awq2trt {

constexpr char kPluginName[] = "AwqGemm";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "awq2trt";

// Field names: the ONNX node's attributes (the parser passes INT attributes as kINT32 fields).
constexpr char kFieldK[] = "K";
constexpr char kFieldN[] = "N";
constexpr char kFieldGroupSize[] = "group_size";
constexpr char kFieldHasZeroPoints[] = "has_zero_points";
constexpr char kFieldHasBias[] = "has_bias";
constexpr char kFieldDtype[] = "dtype";  // 0 = fp16, 1 = bf16 (awq2trt_dtype)
// Written by the plugin itself when TensorRT serializes it: the SM count that sized split-K and the workspace at
// build time, so that a runtime on another GPU model cannot ask for more workspace than the engine reserved.
constexpr char kFieldSmCount[] = "split_sm_count";

struct AwqGemmConfig {
  int32_t k = 0;
  int32_t n = 0;
  int32_t group_size = 0;
  int32_t has_zero_points = 0;
  int32_t has_bias = 0;
  int32_t dtype = 0;
  int32_t sm_count = 0;  // 0 = not fixed yet (query the device)

  bool operator==(AwqGemmConfig const& o) const {
    return k == o.k && n == o.n && group_size == o.group_size && has_zero_points == o.has_zero_points &&
           has_bias == o.has_bias && dtype == o.dtype && sm_count == o.sm_count;
  }
  int32_t n_pad() const { return (n + 7) / 8 * 8; }
  int32_t nb_inputs() const { return 3 + (has_zero_points ? 1 : 0) + (has_bias ? 1 : 0); }
  int32_t zeros_index() const { return has_zero_points ? 3 : -1; }
  int32_t bias_index() const { return has_bias ? 3 + (has_zero_points ? 1 : 0) : -1; }
  nvinfer1::DataType activation_type() const {
    return dtype == 1 ? nvinfer1::DataType::kBF16 : nvinfer1::DataType::kHALF;
  }
};

// Empty when the config is one the kernels take; otherwise what is wrong, for the log.
std::string validate(AwqGemmConfig const& config);

// Reads the fields TensorRT (or the parser) passes; unknown fields are ignored, missing required ones are an
// error.  Returns false with *error set on a problem.
bool config_from_fields(nvinfer1::PluginFieldCollection const* fields, AwqGemmConfig* config, std::string* error);

// The fields that serialize a config; the collection points into this object, so it must outlive the use.
class FieldStore {
 public:
  explicit FieldStore(AwqGemmConfig const& config);
  FieldStore(FieldStore const&) = delete;
  FieldStore& operator=(FieldStore const&) = delete;
  nvinfer1::PluginFieldCollection const* collection() const { return &collection_; }

 private:
  int32_t values_[7];
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection collection_{};
};

// The creator's field list (names and types, no data).
nvinfer1::PluginFieldCollection const* field_names();

// supportsFormatCombination: every tensor linear; A, scales, bias and Y in the config's 16-bit type; codes and
// zeros kINT32.  The zeros are uint8 codes packed four to an int32 ([K/G, N_pad / 4], the same bytes): TensorRT
// has no uint8 constants, and an int8 tensor is a quantized type to it (scales, calibration), int32 is plain data.
bool supports_format(AwqGemmConfig const& config, int32_t pos, nvinfer1::PluginTensorDesc const* in_out,
                     int32_t nb_inputs, int32_t nb_outputs);

// Static shape checks of the inputs (the dims TensorRT knows at build time; -1 = dynamic): empty when fine.
std::string check_input_dims(AwqGemmConfig const& config, nvinfer1::Dims const* dims, int32_t nb_inputs);

// M of a given A shape: the product of every dimension but the last (K).
int64_t rows_of(nvinfer1::Dims const& a);

}  // namespace awq2trt
