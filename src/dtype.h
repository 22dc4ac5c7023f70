// dtype.h — the element types that cross the exchange, and their codes.
//
// The codes are part of the exchange protocol (see header.h) and never
// change: 1..5 are the seed's five types in the seed's order, 6 is bool.
// All types are stored little-endian, byte-exact (bool is one byte, 0 or 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pyrmap {

enum class Dtype : uint32_t {
  kNone = 0,  // "no array yet" (an unwritten result descriptor)
  kInt32 = 1,
  kInt64 = 2,
  kFloat32 = 3,
  kFloat64 = 4,
  kUInt8 = 5,
  kBool = 6,
};

inline constexpr uint32_t kMaxDtypeCode = 6;

// Bytes per element; 0 for kNone.
size_t ItemSize(Dtype dtype);

// numpy's name for the type: "int32", "int64", "float32", "float64",
// "uint8", "bool" ("none" for kNone).
const char* DtypeName(Dtype dtype);

// numpy's little-endian type string, as in .npy headers: "<i4", "|u1", "|b1".
const char* NumpyTypeString(Dtype dtype);

// Parses a dtype name (case-sensitive, numpy spelling; "logical" and "raw"
// are accepted as R's names for bool and uint8). std::nullopt if unknown.
std::optional<Dtype> ParseDtype(std::string_view name);

// Parses a numpy type string such as "<f8" or "|u1" (from a .npy header).
std::optional<Dtype> ParseNumpyTypeString(std::string_view descr);

// A dtype from its protocol code; std::nullopt for an unknown code.
std::optional<Dtype> DtypeFromCode(uint32_t code);

// The list of names accepted by ParseDtype, for messages and --help.
const char* DtypeNameList();

}  // namespace pyrmap
