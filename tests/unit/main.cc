// The doctest runner for the core's unit tests. Run from tests/unit (the
// golden files are found relative to it).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
