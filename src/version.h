// version.h — the pyrmap release: its one definition.
//
// The command prints it (--version) and the Makefile names the R tarball
// after it. The parts that cannot read this file repeat it:
// python/pyproject.toml, python/pyrmap/__init__.py (__version__) and
// r-pkg/DESCRIPTION; tests/e2e/test_help.py checks that each carries this
// number, so a release changes all four together.
#pragma once

#define PYRMAP_VERSION "0.1.0"
