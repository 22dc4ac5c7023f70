// utf8.h — making text from outside (a script's traceback and stderr, names
// read from a header) valid UTF-8 before it goes into a message.
#pragma once

#include <string>
#include <string_view>

namespace pyrmap {

// `text` with every byte that is not part of a valid UTF-8 sequence (and
// every encoded surrogate or overlong form) replaced by U+FFFD. Valid text
// comes back unchanged.
std::string ToValidUtf8(std::string_view text);

// Whether `text` is valid UTF-8 (what ToValidUtf8 leaves unchanged).
bool IsValidUtf8(std::string_view text);

}  // namespace pyrmap
