# dibr_ros: `make demo` runs the main job, `make test` the whole suite. Both set themselves up.
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# ROS 2 traffic stays on loopback here (Kilted ignores ROS_LOCALHOST_ONLY).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
# Shared-memory-only Fast DDS with segments that hold full camera frames (see the file's comment).
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_shm.xml
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.torch_ext
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint clean

setup: $(STAMP)

# Reinstall only when the requirements change.
$(STAMP): requirements.txt
	@echo "== setup: system library libusb-1.0-0 (open3d needs it)"
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0; }; \
	fi
	@echo "== setup: virtual environment $(VENV) + requirements.txt (about a minute the first time)"
	@[ -x $(PY) ] || $(PY_BOOT) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	@$(PY) -c "import torch, numpy, open3d, cv2, rclpy" || { echo "setup: import check failed"; exit 1; }
	@touch $(STAMP)

lint: $(STAMP)
	@echo "== lint: ruff"
	@$(VENV)/bin/ruff check .

test: $(STAMP) lint
	@echo "== test: pytest on CPU (ROS_AUTOMATIC_DISCOVERY_RANGE=$$ROS_AUTOMATIC_DISCOVERY_RANGE)"
	@$(PY) -m pytest -p no:dash -q test

demo: $(STAMP)
	@echo "== demo: simulated tabletop camera + perception node, results in out/demo/"
	@$(PY) -m dibr_ros.demo --out out/demo

clean:
	rm -rf out .pytest_cache .ruff_cache .torch_ext
