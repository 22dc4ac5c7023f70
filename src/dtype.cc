#include "dtype.h"

namespace pyrmap {

size_t ItemSize(Dtype dtype) {
  switch (dtype) {
    case Dtype::kInt32: return 4;
    case Dtype::kInt64: return 8;
    case Dtype::kFloat32: return 4;
    case Dtype::kFloat64: return 8;
    case Dtype::kUInt8: return 1;
    case Dtype::kBool: return 1;
    case Dtype::kNone: return 0;
  }
  return 0;
}

const char* DtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::kInt32: return "int32";
    case Dtype::kInt64: return "int64";
    case Dtype::kFloat32: return "float32";
    case Dtype::kFloat64: return "float64";
    case Dtype::kUInt8: return "uint8";
    case Dtype::kBool: return "bool";
    case Dtype::kNone: return "none";
  }
  return "none";
}

const char* NumpyTypeString(Dtype dtype) {
  switch (dtype) {
    case Dtype::kInt32: return "<i4";
    case Dtype::kInt64: return "<i8";
    case Dtype::kFloat32: return "<f4";
    case Dtype::kFloat64: return "<f8";
    case Dtype::kUInt8: return "|u1";
    case Dtype::kBool: return "|b1";
    case Dtype::kNone: return "";
  }
  return "";
}

std::optional<Dtype> ParseDtype(std::string_view name) {
  if (name == "int32") return Dtype::kInt32;
  if (name == "int64") return Dtype::kInt64;
  if (name == "float32") return Dtype::kFloat32;
  if (name == "float64") return Dtype::kFloat64;
  if (name == "uint8" || name == "raw") return Dtype::kUInt8;
  if (name == "bool" || name == "logical") return Dtype::kBool;
  return std::nullopt;
}

std::optional<Dtype> ParseNumpyTypeString(std::string_view d) {
  // Byte order: '<' little, '|' not applicable, '=' native (little here).
  if (d.size() < 2) return std::nullopt;
  char order = d[0];
  std::string_view code = d.substr(1);
  bool one_byte = code == "u1" || code == "b1" || code == "i1";
  if (order != '<' && order != '=' && !(order == '|' && one_byte))
    return std::nullopt;
  if (code == "i4") return Dtype::kInt32;
  if (code == "i8") return Dtype::kInt64;
  if (code == "f4") return Dtype::kFloat32;
  if (code == "f8") return Dtype::kFloat64;
  if (code == "u1") return Dtype::kUInt8;
  if (code == "b1") return Dtype::kBool;
  return std::nullopt;
}

std::optional<Dtype> DtypeFromCode(uint32_t code) {
  if (code >= 1 && code <= kMaxDtypeCode) return static_cast<Dtype>(code);
  return std::nullopt;
}

const char* DtypeNameList() {
  return "int32, int64, float32, float64, uint8, bool";
}

}  // namespace pyrmap
