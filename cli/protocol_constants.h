// protocol_constants.h — the exchange protocol's constants as this build
// has them (header.h, dtype.h), as one JSON object.
//
// `pyrmap --protocol-constants` prints it; tests/python/test_header.py
// compares it with python/pyrmap/_header.py name by name (the keys are the
// Python names), so the two sides of the protocol cannot drift apart.
#pragma once

#include <string>

namespace pyrmap::cli {

std::string ProtocolConstantsJson();

}  // namespace pyrmap::cli
