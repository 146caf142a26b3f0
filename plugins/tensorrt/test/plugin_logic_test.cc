// plugin_logic_test LIB: loads libawq2trt_trt through dlopen and getCreators (as TensorRT does) and checks the
// creator, the field serialization round trip, validation, formats, output types, shape checks and workspace
// sizing.  No GPU and no TensorRT library are needed: only TensorRT's headers, for the interface layout.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

int g_failures = 0;
int g_checks = 0;

void check(bool ok, char const* what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL: %s\n", what);
  }
}

using nvinfer1::DataType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

struct Fields {
  std::map<std::string, int32_t> values;
  std::vector<PluginField> list;
  nvinfer1::PluginFieldCollection collection{};
  nvinfer1::PluginFieldCollection const* get() {
    list.clear();
    for (auto& kv : values) list.emplace_back(kv.first.c_str(), &kv.second, PluginFieldType::kINT32, 1);
    collection.nbFields = static_cast<int32_t>(list.size());
    collection.fields = list.data();
    return &collection;
  }
};

std::map<std::string, int32_t> read(nvinfer1::PluginFieldCollection const* fc) {
  std::map<std::string, int32_t> out;
  for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
    if (fc->fields[i].type == PluginFieldType::kINT32 && fc->fields[i].length == 1) {
      out[fc->fields[i].name] = *static_cast<int32_t const*>(fc->fields[i].data);
    }
  }
  return out;
}

nvinfer1::DynamicPluginTensorDesc desc(DataType type, std::vector<int64_t> dims,
                                       TensorFormat format = TensorFormat::kLINEAR) {
  nvinfer1::DynamicPluginTensorDesc d{};
  d.desc.type = type;
  d.desc.format = format;
  d.desc.dims.nbDims = static_cast<int32_t>(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) d.desc.dims.d[i] = dims[i];
  d.min = d.max = d.opt = d.desc.dims;
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: %s libawq2trt_trt.so\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::printf("FAIL: dlopen: %s\n", dlerror());
    return 1;
  }
  using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&);
  using WorkspaceSize = size_t (*)(int64_t, int64_t, int64_t, int);
  auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
  auto workspace_size = reinterpret_cast<WorkspaceSize>(dlsym(lib, "awq2trt_int4_gemm_workspace_size"));
  check(get_creators && workspace_size && dlsym(lib, "setLoggerFinder"), "entry points exported");
  if (!get_creators || !workspace_size) return 1;
  int32_t nb = 0;
  nvinfer1::IPluginCreatorInterface* const* creators = get_creators(nb);
  check(nb == 1, "one creator");
  check(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "a V3One creator");
  auto* creator = static_cast<nvinfer1::IPluginCreatorV3One*>(creators[0]);
  check(std::strcmp(creator->getPluginName(), "AwqGemm") == 0, "name AwqGemm");
  check(std::strcmp(creator->getPluginVersion(), "1") == 0, "version 1");
  check(std::strcmp(creator->getPluginNamespace(), "awq2trt") == 0, "namespace awq2trt");
  auto names = creator->getFieldNames();
  std::vector<std::string> want = {"K", "N", "group_size", "has_zero_points", "has_bias", "dtype"};
  check(names && names->nbFields == static_cast<int32_t>(want.size()), "six required fields");
  for (int32_t i = 0; names && i < names->nbFields && i < static_cast<int32_t>(want.size()); ++i) {
    check(want[i] == names->fields[i].name && names->fields[i].type == PluginFieldType::kINT32, "field name/type");
  }

  // Round trip: build-phase fields -> serialized fields -> runtime-phase plugin -> the same fields.
  Fields f;
  f.values = {{"K", 576}, {"N", 577}, {"group_size", 64}, {"has_zero_points", 1}, {"has_bias", 1},
              {"dtype", 0}, {"split_sm_count", 132}};
  nvinfer1::IPluginV3* plugin = creator->createPlugin("layer0", f.get(), nvinfer1::TensorRTPhase::kBUILD);
  check(plugin != nullptr, "createPlugin(build)");
  if (!plugin) return 1;
  auto* core = static_cast<nvinfer1::IPluginV3OneCore*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
  auto* build = static_cast<nvinfer1::IPluginV3OneBuild*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
  auto* runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
  check(core && build && runtime, "three capabilities");
  check(std::strcmp(core->getPluginName(), "AwqGemm") == 0 && std::strcmp(core->getPluginNamespace(), "awq2trt") == 0,
        "core name and namespace");
  check(std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0, "runtime interface kind");
  std::map<std::string, int32_t> serialized = read(runtime->getFieldsToSerialize());
  check(serialized == f.values, "serialized fields equal the given ones");
  Fields again;
  again.values = serialized;
  nvinfer1::IPluginV3* restored = creator->createPlugin("layer0", again.get(), nvinfer1::TensorRTPhase::kRUNTIME);
  check(restored != nullptr, "createPlugin(runtime) from serialized fields");
  if (restored) {
    auto* rt = static_cast<nvinfer1::IPluginV3OneRuntime*>(restored->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
    check(read(rt->getFieldsToSerialize()) == f.values, "round trip preserves every field");
    nvinfer1::IPluginV3* copy = restored->clone();
    auto* copy_rt = static_cast<nvinfer1::IPluginV3OneRuntime*>(copy->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
    check(read(copy_rt->getFieldsToSerialize()) == f.values, "clone preserves every field");
    delete copy;
    delete restored;
  }

  // Validation: each bad field value, a missing field, a wrong field type.
  for (auto bad : std::vector<std::pair<std::string, int32_t>>{
           {"K", 96}, {"K", 0}, {"N", 0}, {"group_size", 16}, {"group_size", 48}, {"has_bias", 2}, {"dtype", 2}}) {
    Fields b;
    b.values = f.values;
    b.values[bad.first] = bad.second;
    nvinfer1::IPluginV3* p = creator->createPlugin("bad", b.get(), nvinfer1::TensorRTPhase::kBUILD);
    check(p == nullptr, ("refuses " + bad.first + "=" + std::to_string(bad.second)).c_str());
    delete p;
  }
  Fields missing;
  missing.values = f.values;
  missing.values.erase("group_size");
  check(creator->createPlugin("bad", missing.get(), nvinfer1::TensorRTPhase::kBUILD) == nullptr, "refuses a missing field");
  float k_float = 576.0f;
  PluginField wrong_type[] = {PluginField("K", &k_float, PluginFieldType::kFLOAT32, 1)};
  nvinfer1::PluginFieldCollection wrong{1, wrong_type};
  check(creator->createPlugin("bad", &wrong, nvinfer1::TensorRTPhase::kBUILD) == nullptr, "refuses a float field");

  // Formats: A, scales, bias, Y fp16 (dtype 0); codes int32; zeros int8; linear only.
  std::vector<nvinfer1::DynamicPluginTensorDesc> io = {
      desc(DataType::kHALF, {-1, 576}), desc(DataType::kINT32, {584 * 576 / 8}), desc(DataType::kHALF, {9, 584}),
      desc(DataType::kINT32, {9, 146}), desc(DataType::kHALF, {577}), desc(DataType::kHALF, {-1, 577})};
  for (int32_t pos = 0; pos < 6; ++pos) check(build->supportsFormatCombination(pos, io.data(), 5, 1), "fp16 combination");
  auto refused = [&](int32_t pos, DataType type, TensorFormat format) {
    auto changed = io;
    changed[pos].desc.type = type;
    changed[pos].desc.format = format;
    return !build->supportsFormatCombination(pos, changed.data(), 5, 1);
  };
  check(refused(0, DataType::kFLOAT, TensorFormat::kLINEAR), "refuses fp32 A");
  check(refused(0, DataType::kBF16, TensorFormat::kLINEAR), "refuses bf16 A for a dtype 0 plugin");
  check(refused(0, DataType::kHALF, TensorFormat::kCHW2), "refuses a non-linear format");
  check(refused(1, DataType::kINT8, TensorFormat::kLINEAR), "refuses int8 codes");
  check(refused(3, DataType::kHALF, TensorFormat::kLINEAR), "refuses fp16 zeros");
  check(refused(3, DataType::kINT8, TensorFormat::kLINEAR), "refuses int8 zeros (a quantized type to TensorRT)");
  auto bad_zeros = io;
  bad_zeros[3] = desc(DataType::kINT32, {9, 584});  // one code per int32: not the packed form
  std::vector<nvinfer1::DynamicPluginTensorDesc> y_only = {io[5]};
  check(build->configurePlugin(bad_zeros.data(), 5, y_only.data(), 1) != 0, "configure refuses unpacked zeros");
  check(refused(5, DataType::kFLOAT, TensorFormat::kLINEAR), "refuses an fp32 output");
  check(!build->supportsFormatCombination(0, io.data(), 4, 1), "refuses a wrong input count");

  DataType in_types[5] = {DataType::kHALF, DataType::kINT32, DataType::kHALF, DataType::kINT32, DataType::kHALF};
  DataType out_type = DataType::kFLOAT;
  check(build->getOutputDataTypes(&out_type, 1, in_types, 5) == 0 && out_type == DataType::kHALF, "Y has A's type");
  check(build->getNbOutputs() == 1, "one output");

  // Shape checks at configure time.
  std::vector<nvinfer1::DynamicPluginTensorDesc> out = {io[5]};
  check(build->configurePlugin(io.data(), 5, out.data(), 1) == 0, "configure accepts the right shapes");
  auto bad_scales = io;
  bad_scales[2] = desc(DataType::kHALF, {9, 577});  // N, not N_pad
  check(build->configurePlugin(bad_scales.data(), 5, out.data(), 1) != 0, "configure refuses unpadded scales");
  auto bad_k = io;
  bad_k[0] = desc(DataType::kHALF, {-1, 512});
  check(build->configurePlugin(bad_k.data(), 5, out.data(), 1) != 0, "configure refuses A with the wrong K");

  // Workspace: the largest split-K need over the profile's M range, at the fixed SM count.
  auto ranged = io;
  ranged[0].min.d[0] = 1;
  ranged[0].max.d[0] = 16;
  size_t most = 0;
  for (int64_t m = 1; m <= 16; ++m) most = std::max(most, workspace_size(m, 577, 576, 132));
  check(build->getWorkspaceSize(ranged.data(), 5, out.data(), 1) == most, "workspace = max over the M range");
  check(most > 0, "decode shapes split K on 132 SMs");

  // A symmetric, bias-free bf16 plugin has three inputs.
  Fields sym;
  sym.values = {{"K", 128}, {"N", 8}, {"group_size", 128}, {"has_zero_points", 0}, {"has_bias", 0}, {"dtype", 1}};
  nvinfer1::IPluginV3* small = creator->createPlugin("sym", sym.get(), nvinfer1::TensorRTPhase::kBUILD);
  check(small != nullptr, "symmetric plugin");
  if (small) {
    auto* b = static_cast<nvinfer1::IPluginV3OneBuild*>(small->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
    std::vector<nvinfer1::DynamicPluginTensorDesc> sio = {desc(DataType::kBF16, {2, 3, 128}),
                                                          desc(DataType::kINT32, {128}), desc(DataType::kBF16, {1, 8}),
                                                          desc(DataType::kBF16, {2, 3, 8})};
    for (int32_t pos = 0; pos < 4; ++pos) check(b->supportsFormatCombination(pos, sio.data(), 3, 1), "bf16 combination");
    check(!b->supportsFormatCombination(0, sio.data(), 5, 1), "a symmetric plugin takes three inputs");
    std::vector<nvinfer1::DynamicPluginTensorDesc> sout = {sio[3]};
    check(b->configurePlugin(sio.data(), 3, sout.data(), 1) == 0, "configure (rank-3 A)");
    delete small;
  }
  delete plugin;
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
