#include "awq_gemm_config.h"

#include <cstring>

namespace awq2trt {

namespace {

struct FieldSlot {
  char const* name;
  int32_t AwqGemmConfig::*member;
  bool required;
};

constexpr FieldSlot kSlots[] = {
    {kFieldK, &AwqGemmConfig::k, true},
    {kFieldN, &AwqGemmConfig::n, true},
    {kFieldGroupSize, &AwqGemmConfig::group_size, true},
    {kFieldHasZeroPoints, &AwqGemmConfig::has_zero_points, true},
    {kFieldHasBias, &AwqGemmConfig::has_bias, true},
    {kFieldDtype, &AwqGemmConfig::dtype, true},
    {kFieldSmCount, &AwqGemmConfig::sm_count, false},
};
constexpr int kNbSlots = sizeof(kSlots) / sizeof(kSlots[0]);

}  // namespace

std::string validate(AwqGemmConfig const& c) {
  if (c.k < 64 || c.k % 64) return "K must be a positive multiple of 64, got " + std::to_string(c.k);
  if (c.n < 1) return "N must be positive, got " + std::to_string(c.n);
  if (c.group_size < 32 || c.group_size % 32 || c.k % c.group_size) {
    return "group_size must be a multiple of 32 that divides K, got " + std::to_string(c.group_size);
  }
  if ((c.has_zero_points != 0 && c.has_zero_points != 1) || (c.has_bias != 0 && c.has_bias != 1)) {
    return "has_zero_points and has_bias must be 0 or 1";
  }
  if (c.dtype != 0 && c.dtype != 1) return "dtype must be 0 (fp16) or 1 (bf16), got " + std::to_string(c.dtype);
  if (c.sm_count < 0) return "split_sm_count must not be negative";
  return {};
}

bool config_from_fields(nvinfer1::PluginFieldCollection const* fields, AwqGemmConfig* config, std::string* error) {
  AwqGemmConfig out;
  bool seen[kNbSlots] = {};
  for (int32_t i = 0; fields && i < fields->nbFields; ++i) {
    nvinfer1::PluginField const& f = fields->fields[i];
    if (!f.name) continue;
    for (int s = 0; s < kNbSlots; ++s) {
      if (std::strcmp(f.name, kSlots[s].name) != 0) continue;
      if (f.type != nvinfer1::PluginFieldType::kINT32 || f.length != 1 || !f.data) {
        *error = std::string("field ") + f.name + " must be one int32";
        return false;
      }
      out.*(kSlots[s].member) = *static_cast<int32_t const*>(f.data);
      seen[s] = true;
    }
  }
  for (int s = 0; s < kNbSlots; ++s) {
    if (kSlots[s].required && !seen[s]) {
      *error = std::string("missing field ") + kSlots[s].name;
      return false;
    }
  }
  *error = validate(out);
  if (!error->empty()) return false;
  *config = out;
  return true;
}

FieldStore::FieldStore(AwqGemmConfig const& config) {
  for (int s = 0; s < kNbSlots; ++s) {
    values_[s] = config.*(kSlots[s].member);
    fields_.emplace_back(kSlots[s].name, &values_[s], nvinfer1::PluginFieldType::kINT32, 1);
  }
  collection_.nbFields = static_cast<int32_t>(fields_.size());
  collection_.fields = fields_.data();
}

nvinfer1::PluginFieldCollection const* field_names() {
  // The required fields only: the parser warns about any listed field a node lacks.
  static std::vector<nvinfer1::PluginField> const names = [] {
    std::vector<nvinfer1::PluginField> v;
    for (int s = 0; s < kNbSlots; ++s) {
      if (kSlots[s].required) v.emplace_back(kSlots[s].name, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
    }
    return v;
  }();
  static nvinfer1::PluginFieldCollection const collection{static_cast<int32_t>(names.size()), names.data()};
  return &collection;
}

bool supports_format(AwqGemmConfig const& config, int32_t pos, nvinfer1::PluginTensorDesc const* in_out,
                     int32_t nb_inputs, int32_t nb_outputs) {
  if (nb_inputs != config.nb_inputs() || nb_outputs != 1 || pos < 0 || pos >= nb_inputs + nb_outputs) return false;
  nvinfer1::PluginTensorDesc const& d = in_out[pos];
  if (d.format != nvinfer1::TensorFormat::kLINEAR) return false;
  if (pos == 1) return d.type == nvinfer1::DataType::kINT32;
  if (pos == config.zeros_index()) return d.type == nvinfer1::DataType::kINT32;
  return d.type == config.activation_type();  // A, scales, bias, Y
}

std::string check_input_dims(AwqGemmConfig const& c, nvinfer1::Dims const* dims, int32_t nb_inputs) {
  if (nb_inputs != c.nb_inputs()) {
    return "expected " + std::to_string(c.nb_inputs()) + " inputs, got " + std::to_string(nb_inputs);
  }
  nvinfer1::Dims const& a = dims[0];
  if (a.nbDims < 1 || (a.d[a.nbDims - 1] != -1 && a.d[a.nbDims - 1] != c.k)) return "A's last dimension must be K";
  auto is = [](nvinfer1::Dims const& d, std::initializer_list<int64_t> want) {
    if (d.nbDims != static_cast<int32_t>(want.size())) return false;
    int i = 0;
    for (int64_t w : want) {
      if (d.d[i] != -1 && d.d[i] != w) return false;
      ++i;
    }
    return true;
  };
  int64_t const groups = c.k / c.group_size;
  if (!is(dims[1], {static_cast<int64_t>(c.n_pad()) * c.k / 8})) return "codes must be int32 [N_pad * K / 8]";
  if (!is(dims[2], {groups, c.n_pad()})) return "scales must be [K / G, N_pad]";
  if (c.has_zero_points && !is(dims[c.zeros_index()], {groups, c.n_pad() / 4})) {
    return "zeros must be int32 [K / G, N_pad / 4] (uint8 codes, four per int32)";
  }
  if (c.has_bias && !is(dims[c.bias_index()], {c.n})) return "bias must be [N]";
  return {};
}

int64_t rows_of(nvinfer1::Dims const& a) {
  int64_t m = 1;
  for (int32_t i = 0; i + 1 < a.nbDims; ++i) m *= a.d[i];
  return m;
}

}  // namespace awq2trt
