# sparp_ros — the two commands users need: `make demo` and `make test`.
# Every set-up step leaves a stamp file so re-running skips what is done.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMPS := $(VENV)/.stamps
# The wheels' ROS environment: our interfaces are installed into the venv itself.
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONNOUSERSITE := 1

.PHONY: demo test setup bench clean
demo: setup
	$(PY) -m sparp_ros.cli demo

test: setup
	$(PY) -m pytest -q test

setup: $(STAMPS)/debian $(STAMPS)/python $(STAMPS)/interfaces

# Debian libraries: EGL/Mesa for headless rendering, libusb for open3d, libgomp for torch/open3d.
$(STAMPS)/debian: scripts/setup_debian.sh
	bash scripts/setup_debian.sh
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/python: requirements.txt setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PIP) install -q --no-deps -e . 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, diffusers, cv2, open3d, moderngl, rclpy, pycolmap" 
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/interfaces: $(STAMPS)/python scripts/build_interfaces.sh $(wildcard interfaces/*/msg/*.msg interfaces/*/CMakeLists.txt interfaces/*/package.xml)
	bash scripts/build_interfaces.sh $(VENV)
	@mkdir -p $(STAMPS) && touch $@

bench: setup
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) build log install
