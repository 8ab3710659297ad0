# The two commands of the README:
#   make run   — install what is needed, prepare the embedded hotline, and start it
#   make test  — install what is needed and run the whole test suite
# CONFIG=path/to/hotline.toml selects a configuration (default: built-in defaults, SQLite under var/).

SHELL := /bin/bash
VENV := .venv
HOTLINE := $(VENV)/bin/hotline
CONFIG ?=
CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: run test setup system venv web tts prepare cluster

system:
	bash .ci/install-system.sh

venv:
	bash .ci/setup-venv.sh

web:
	bash .ci/setup-web.sh

# The neural prompt voice's own venv (.venv-tts: TensorFlow 2.15, numpy < 2), build-time only.
tts:
	bash .ci/setup-tts.sh

setup: system venv web tts

prepare: setup
	$(HOTLINE) db upgrade $(CONFIG_ARG)
	$(HOTLINE) demo seed --city $(CONFIG_ARG)
	$(HOTLINE) prompts build $(CONFIG_ARG)
	$(HOTLINE) extract train --if-changed $(CONFIG_ARG)

run: prepare
	$(HOTLINE) serve $(CONFIG_ARG)

# Kamailio (sip_config/kamailio/) in front of NODES hotline nodes on one PostgreSQL, on this
# machine: prints where to call and where to browse; Ctrl-C stops everything.
NODES ?= 2
cluster: setup
	$(VENV)/bin/python -m callcenter.cluster.runner --nodes $(NODES) $(CLUSTER_ARGS)

test: setup
	bash .ci/ensure-postgres.sh
	$(VENV)/bin/python -m case_core.classifier_training
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)
