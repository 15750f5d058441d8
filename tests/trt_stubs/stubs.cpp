// Stand-in TensorRT shared libraries for API-conformance tests on machines
// without TensorRT (no GPU, no NVIDIA index). They satisfy the dynamic links
// of the real `tensorrt_bindings` extension module so the real Python classes,
// enums and method signatures import. Every factory returns null, so nothing
// here can build or run an engine: `trt.Builder(logger)` raises TypeError.
//
// Compiled once per library and TensorRT major version by prepare.py with one
// of -DSTUB_NVINFER, -DSTUB_NVONNXPARSER, -DSTUB_NVINFER_PLUGIN, -DSTUB_NVPARSERS.
#include <cstdint>

#define STUB_EXPORT extern "C" __attribute__((visibility("default")))

#ifdef STUB_NVINFER
STUB_EXPORT void* createInferBuilder_INTERNAL(void*, int32_t) { return nullptr; }
STUB_EXPORT void* createInferRuntime_INTERNAL(void*, int32_t) { return nullptr; }
STUB_EXPORT void* createInferRefitter_INTERNAL(void*, void*, int32_t) { return nullptr; }
STUB_EXPORT void* getPluginRegistry() { return nullptr; }
STUB_EXPORT void* getBuilderPluginRegistry(int32_t) { return nullptr; }
#endif

#ifdef STUB_NVONNXPARSER
STUB_EXPORT void* createNvOnnxParser_INTERNAL(void*, void*, int32_t) { return nullptr; }
STUB_EXPORT void* createNvOnnxParserRefitter_INTERNAL(void*, void*, int32_t) { return nullptr; }
// 0 is no real parser version; nothing may mistake the stand-in for a parser.
STUB_EXPORT int32_t getNvOnnxParserVersion() { return 0; }
#endif

#ifdef STUB_NVINFER_PLUGIN
STUB_EXPORT bool initLibNvInferPlugins(void*, const char*) { return false; }
#endif

#ifdef STUB_NVPARSERS
// TensorRT 8.x only: the Caffe and UFF parsers (C++ linkage, as in NvCaffeParser.h / NvUffParser.h).
namespace nvcaffeparser1 {
class ICaffeParser;
__attribute__((visibility("default"))) ICaffeParser* createCaffeParser() { return nullptr; }
__attribute__((visibility("default"))) void shutdownProtobufLibrary() {}
}  // namespace nvcaffeparser1

namespace nvuffparser {
enum class FieldType : int32_t { kFLOAT = 0, kINT32, kCHAR, kDIMS = 4, kDATATYPE, kUNKNOWN };
class IUffParser;
// Same member layout as the real NvUffParser.h, so the bindings' own allocation fits.
class __attribute__((visibility("default"))) FieldMap {
 public:
  const char* name;
  const void* data;
  FieldType type = FieldType::kUNKNOWN;
  int32_t length = 1;
  FieldMap(const char* name, const void* data, FieldType type, int32_t length = 1);
};
FieldMap::FieldMap(const char* name_, const void* data_, FieldType type_, int32_t length_)
    : name(name_), data(data_), type(type_), length(length_) {}
__attribute__((visibility("default"))) IUffParser* createUffParser() { return nullptr; }
}  // namespace nvuffparser
#endif
