// golden.h — the golden files (tests/golden, made by make_golden.py) as
// the unit tests read them: the bytes of one file, and the JSON that
// describes what each file must decode to.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pyrmap::test {

// Relative to the unit tests' working directory (tests/unit).
inline const std::string kGoldenDir = "../golden/";

inline std::vector<uint8_t> ReadGolden(const std::string& name) {
  const std::string path = kGoldenDir + name;
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline nlohmann::json ReadGoldenJson(const std::string& name) {
  const std::string path = kGoldenDir + name;
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  return nlohmann::json::parse(f);
}

}  // namespace pyrmap::test
