// The doctest runner for the core's unit tests. Run from tests/unit (the
// golden files are found relative to it). Started again by the engine's
// tests as a worker program (PYRMAP_UNIT_ENGINE_WORKER set: engine_test.cc).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

int EngineTestWorkerMain();

int main(int argc, char** argv) {
  if (std::getenv("PYRMAP_UNIT_ENGINE_WORKER")) return EngineTestWorkerMain();
  return doctest::Context(argc, argv).run();
}
