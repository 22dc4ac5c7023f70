# pyrmap — build, test, benchmark.
#
#   make             build the core library, the pyrmap command and the R package
#   make demo        build, then run the end-to-end demo (R -> pyrmap -> Python -> R, and the CLI)
#   make test        every test: C++ unit tests, pytest, CLI end-to-end, R package (its
#                    examples included), and the R vignette built
#   make test-large  the tests that need several GiB (long vectors)
#   make bench       benchmarks; tables go to bench/RESULTS.md
#   make deps        install the Debian packages this needs (apt-get, --no-install-recommends)

CXX      ?= g++
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -Wall -Wextra -fPIC -pthread
LDLIBS   += -lfmt -pthread
BUILD    := build

# An interpreter with numpy: $PYRMAP_PYTHON, else /usr/bin/python3, else python3.
# (Looked for when make starts: `demo` and `test` run a sub-make after `deps`.)
PYTHON ?= $(shell for p in "$$PYRMAP_PYTHON" /usr/bin/python3 python3; do \
            [ -n "$$p" ] && "$$p" -c 'import numpy' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
export PYRMAP_PYTHON := $(PYTHON)

CORE_SRC := $(wildcard src/*.cc)
CORE_OBJ := $(CORE_SRC:src/%.cc=$(BUILD)/core/%.o)
CLI_SRC  := $(wildcard cli/*.cc)
CLI_OBJ  := $(CLI_SRC:cli/%.cc=$(BUILD)/cli/%.o)
UNIT_SRC := $(wildcard tests/unit/*.cc)
UNIT_OBJ := $(UNIT_SRC:tests/unit/%.cc=$(BUILD)/unit/%.o)

VERSION  := $(shell sed -n 's/^\#define PYRMAP_VERSION "\(.*\)"/\1/p' src/version.h)
RLIB     := $(BUILD)/Rlib
R_TARBALL := $(BUILD)/pyrmap_$(VERSION).tar.gz
R_SOURCES := $(shell find r-pkg src cli python examples -type f ! -name '*.o' ! -name '*.so' ! -path '*/__pycache__/*' ! -path 'r-pkg/inst/bin/*' 2>/dev/null)
# R reads the installed package from build/Rlib, and the interpreter from PYRMAP_PYTHON.
RENV     := R_LIBS=$(abspath $(RLIB)) PYRMAP_PYTHON=$(PYTHON)

.PHONY: all core cli python-bytecode r-pkg demo demo-run test test-unit test-python test-e2e test-r test-vignette test-large \
        bench bench-quick deps clean check-python check-r

all: cli r-pkg

core: $(BUILD)/libpyrmap.a
cli: $(BUILD)/pyrmap

$(BUILD)/core/%.o: src/%.cc $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/cli/%.o: cli/%.cc $(wildcard cli/*.h src/*.h)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -iquote src -DPYRMAP_SOURCE_PYTHON_DIR='"$(CURDIR)/python"' -c $< -o $@

$(BUILD)/unit/%.o: tests/unit/%.cc $(wildcard src/*.h tests/unit/*.h)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -iquote src -c $< -o $@

$(BUILD)/libpyrmap.a: $(CORE_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/pyrmap: $(CLI_OBJ) $(BUILD)/libpyrmap.a python-bytecode
	$(CXX) $(CXXFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libpyrmap.a $(LDLIBS)

# Bytecode for the Python package, checked by source hash (valid after
# copies, and read even where PYTHONDONTWRITEBYTECODE is set): a few ms less
# per run.
python-bytecode:
	@[ -z "$(PYTHON)" ] || $(PYTHON) -m compileall -q --invalidation-mode checked-hash python/pyrmap

$(BUILD)/unit_tests: $(UNIT_OBJ) $(BUILD)/libpyrmap.a
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDLIBS)

# The R package, built from its tarball (what users install) into build/Rlib.
r-pkg: $(RLIB)/pyrmap/DESCRIPTION

$(R_TARBALL): $(R_SOURCES)
	@mkdir -p $(BUILD)
	cd $(BUILD) && R CMD build --no-build-vignettes --no-manual $(CURDIR)/r-pkg >/dev/null
	@test -f $@

$(RLIB)/pyrmap/DESCRIPTION: $(R_TARBALL)
	@mkdir -p $(RLIB)
	MAKE="$(MAKE) -j2" R CMD INSTALL --no-test-load -l $(RLIB) $(R_TARBALL) >$(BUILD)/r-install.log 2>&1 \
	  || { tail -40 $(BUILD)/r-install.log; exit 1; }
	@touch $@

# The end-to-end demo: R -> pyrmap -> Python -> R, then the pyrmap command.
# (A sub-make, so that the interpreter is looked for after `deps` ran.)
demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: check-python cli r-pkg
	$(RENV) Rscript examples/demo.R
	PYRMAP_PYTHON=$(PYTHON) PYRMAP_BIN=$(BUILD)/pyrmap examples/demo.sh

# R CMD check of the package tarball as users get it, vignette built (slow:
# the package is compiled twice; not part of make test). Must end with
# "Status: OK" or notes only: no errors, no warnings.
R_CHECK_DIR := $(BUILD)/check
check-r: check-python
	rm -rf $(R_CHECK_DIR) && mkdir -p $(R_CHECK_DIR)
	cd $(R_CHECK_DIR) && $(RENV) MAKE="$(MAKE) -j2" R CMD build $(CURDIR)/r-pkg
	cd $(R_CHECK_DIR) && $(RENV) MAKE="$(MAKE) -j2" _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual pyrmap_$(VERSION).tar.gz
	@! grep -E "^Status: .*(ERROR|WARNING)" $(R_CHECK_DIR)/pyrmap.Rcheck/00check.log

check-python:
	@[ -n "$(PYTHON)" ] || { echo "No Python interpreter with numpy found: install python3-numpy (make deps) or set PYRMAP_PYTHON"; exit 1; }

test: deps
	@$(MAKE) --no-print-directory test-unit test-python test-e2e test-r test-vignette
	@leftover=$$(ls /dev/shm | grep '^pyrmap-' || true); \
	  if [ -n "$$leftover" ]; then echo "segments left in /dev/shm:"; echo "$$leftover"; exit 1; fi
	@echo "all tests passed"

test-unit: $(BUILD)/unit_tests
	cd tests/unit && ../../$(BUILD)/unit_tests

# The header tests compare python/pyrmap/_header.py with the command's
# --protocol-constants, so the command is built first.
test-python: check-python $(BUILD)/pyrmap
	PYRMAP=$(CURDIR)/$(BUILD)/pyrmap $(PYTHON) -m pytest -q tests/python

test-e2e: check-python $(BUILD)/pyrmap
	PYRMAP=$(CURDIR)/$(BUILD)/pyrmap $(PYTHON) -m pytest -q tests/e2e

test-r: check-python r-pkg
	cd r-pkg/tests && $(RENV) Rscript -e 'testthat::test_dir("testthat", package = "pyrmap", load_package = "installed", stop_on_failure = TRUE)'

# The R vignette, built from the installed package as R CMD build builds it
# (knitr + rmarkdown + pandoc): an error in any chunk fails the build, and
# its Python chunks must run (pyrmap_available() decides), not be skipped.
test-vignette: check-python r-pkg
	@mkdir -p $(BUILD)/vignette
	$(RENV) Rscript -e 'stopifnot(pyrmap::pyrmap_available())' \
	  -e 'rmarkdown::render("r-pkg/vignettes/pyrmap.Rmd", output_dir = "$(BUILD)/vignette", intermediates_dir = tempdir(), quiet = TRUE)'

# Benchmarks against the named competitors; tables in bench/RESULTS.md.
bench: check-python cli r-pkg
	$(RENV) bench/run.sh --no-build

bench-quick: check-python cli r-pkg
	$(RENV) bench/run.sh --no-build --quick

# Tests that need several GiB (a raw vector of more than 2^31 elements).
test-large: check-python r-pkg
	cd r-pkg/tests && $(RENV) PYRMAP_TEST_LARGE=1 Rscript -e 'testthat::test_dir("testthat", package = "pyrmap", load_package = "installed", filter = "large", stop_on_failure = TRUE)'

deps:
	@./scripts/install-deps

clean:
	rm -rf $(BUILD)
