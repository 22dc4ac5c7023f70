// version.h — the pyrmap release, shared by the CLI, the R package and the
// Python package (python/pyrmap/__init__.py repeats it; a test compares).
#pragma once

#define PYRMAP_VERSION "0.1.0"
