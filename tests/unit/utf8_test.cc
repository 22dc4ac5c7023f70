#include "utf8.h"

#include <doctest/doctest.h>

using namespace pyrmap;

TEST_CASE("valid UTF-8 passes unchanged") {
  for (std::string s : {std::string(""), std::string("plain ascii\n"),
                        std::string("Gr\xC3\xB6\xC3\x9F" "e \xE2\x89\xA0 3 (\xCF\x80)"),
                        std::string("\xF0\x9F\x98\x80 emoji")}) {
    CHECK(IsValidUtf8(s));
    CHECK(ToValidUtf8(s) == s);
  }
}

TEST_CASE("invalid bytes become U+FFFD, one per byte") {
  CHECK(ToValidUtf8("caf\xE9!") == "caf\xEF\xBF\xBD!");
  CHECK(ToValidUtf8("\xFF\xFE") == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(ToValidUtf8("cut \xE2\x89") == "cut \xEF\xBF\xBD\xEF\xBF\xBD");  // a truncated sequence
  CHECK(ToValidUtf8("\xED\xB3\xA9") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  CHECK(ToValidUtf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  CHECK(ToValidUtf8("\xF4\x90\x80\x80").size() == 12);                         // beyond U+10FFFF
  CHECK_FALSE(IsValidUtf8("caf\xE9"));
  CHECK(IsValidUtf8(ToValidUtf8("x\x80y\xC3")));
}
