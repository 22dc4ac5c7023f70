// bytes.h — fixed-width little-endian fields in byte buffers (the exchange
// header and the registry pages). memcpy keeps the accesses free of
// alignment and aliasing trouble; hosts are little-endian (header.cc checks).
#pragma once

#include <cstdint>
#include <cstring>

namespace pyrmap {

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace pyrmap
