# Set-up and entry points. Everything else is `storetwin <command> [hydra overrides]`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBS := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglib2.0-0 mosquitto \
	python3-gi gir1.2-gst-rtsp-server-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
	chromium chromium-driver postgresql wrk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PYOPENGL_PLATFORM := egl
export YOLO_OFFLINE := 1

.PHONY: demo test test-all bench debs clean

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | debs
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[sim,data,train,edge,ops,dev]'
	@touch $(STAMP)

# The whole loop on the default scenario: simulate → runtime → scorecard (table + report.html).
demo: debs $(STAMP)
	$(VENV)/bin/storetwin run scenario=single_pick

test: debs $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-all: debs $(STAMP)
	$(PY) -m pytest -q -m ''

bench: debs $(STAMP)
	$(PY) benchmarks/bench_sim.py --window-s 40 --json docs/bench_sim_busy_store.json

clean:
	rm -rf $(VENV) runs .pytest_cache
