// The AwqGemm creator and the library's entry points: getCreators (what IPluginRegistry::loadLibrary,
// `awq2trt build --plugin-lib` and `trtexec --staticPlugins` look up for IPluginV3 creators) and setLoggerFinder.
#include <NvInferRuntime.h>

#include <atomic>
#include <string>

#include "awq_gemm_config.h"
#include "awq_gemm_plugin.h"

namespace awq2trt {

namespace {

std::atomic<nvinfer1::ILoggerFinder*> g_logger_finder{nullptr};

class AwqGemmCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    try {
      AwqGemmConfig config;
      std::string error;
      if (!config_from_fields(fc, &config, &error)) {
        log_error(std::string("AwqGemm ") + (name ? name : "") + ": " + error);
        return nullptr;
      }
      // A runtime-phase plugin comes from serialized fields, which always carry the build's SM count.
      if (phase == nvinfer1::TensorRTPhase::kRUNTIME && config.sm_count == 0) config.sm_count = current_sm_count();
      return new AwqGemmPlugin(name ? name : "", config);
    } catch (...) {
      return nullptr;
    }
  }
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return field_names(); }
  char const* getPluginName() const noexcept override { return kPluginName; }
  char const* getPluginVersion() const noexcept override { return kPluginVersion; }
  char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
};

}  // namespace

void log_error(std::string const& message) noexcept {
  nvinfer1::ILoggerFinder* finder = g_logger_finder.load();
  if (!finder) return;
  if (nvinfer1::ILogger* logger = finder->findLogger()) logger->log(nvinfer1::ILogger::Severity::kERROR, message.c_str());
}

}  // namespace awq2trt

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nb_creators) {
  static awq2trt::AwqGemmCreator creator;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
  nb_creators = 1;
  return creators;
}

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  awq2trt::g_logger_finder.store(finder);
}
