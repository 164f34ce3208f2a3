# compress — build, test, benchmark.
#   make demo      build and profile a bundled fixture (the README's first command)
#   make test      unit tests + CLI tests + interop tests (installs what it needs)
#   make interop   Python interop tests only (onnx.checker, ONNX Runtime, onnx-tool) in .venv
#   make bench     benchmarks against the peers, measured in the same run (not a test)
#   make proto     regenerate Sources/ONNXProto from the .proto files (needs protoc)
#   make fuzz SECONDS=N   build the libFuzzer driver (Fuzz/, ASan) and fuzz each reader N s (default 60)
SHELL := /bin/bash
SWIFT ?= swift
VENV  := .venv
PY    := $(VENV)/bin/python
BIN_DEBUG   := .build/debug/compress
BIN_RELEASE := .build/release/compress
APT_PACKAGES := libopenblas0-pthread pkg-config libpng-dev libjpeg62-turbo-dev libturbojpeg0-dev python3-venv librsvg2-bin
# onnxsim/onnxslim: the peers `fuse`'s interop tests compare node counts with (wheels, seconds to install).
# opencv-python-headless, pillow>=13: the references of the preprocessing tests (INTER_LINEAR/AREA, Pillow 13's resize).
PY_PACKAGES  := onnx==1.22.0 onnxruntime==1.32.0 numpy pytest onnx-tool==1.0.1 "pillow>=13" opencv-python-headless==5.0.0.93 onnxsim==0.8.1 onnxslim==0.1.98

.PHONY: all build release test unit interop bench proto demo deps venv clean fuzz

all: build

deps:
	@./scripts/install-deps.sh $(APT_PACKAGES)

venv: $(VENV)/.stamp
$(VENV)/.stamp: Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PY_PACKAGES)
	@touch $@

build: deps
	$(SWIFT) build

# The release binary links the Swift runtime and Foundation statically: process start drops from
# ~13 ms to ~7 ms, which is most of `compress profile`'s time on a ResNet-50. OpenBLAS is opened
# on first use, not linked (Sources/COpenBLAS): `compress --version` is ~3 ms whole process.
# Building needs no OpenBLAS; running a product needs libopenblas0-pthread (or libopenblas0).
release: deps
	$(SWIFT) build -c release -Xswiftc -static-stdlib

demo: release
	$(BIN_RELEASE) info Fixtures/digits_cnn_bn.onnx
	$(BIN_RELEASE) profile Fixtures/digits_cnn_bn.onnx

unit: deps venv
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

test: deps venv unit release interop

interop: venv release
	COMPRESS_BIN=$(abspath $(BIN_RELEASE)) $(PY) -m pytest -q Tests/Interop

# The peers measured only by the benchmarks (not needed by the tests): NNCF for quantize's
# fidelity comparison, scikit-learn for its bundled sample photos.
BENCH_PY_PACKAGES := nncf==3.4.0 scikit-learn==1.9.1

bench: deps venv release
	$(PY) -m pip install -q --disable-pip-version-check $(BENCH_PY_PACKAGES)
	COMPRESS_BIN=$(abspath $(BIN_RELEASE)) $(PY) Tests/Bench/bench.py

# Regenerate the committed protobuf code. protoc comes from Debian's protobuf-compiler; the
# plugin is built from the swift-protobuf checkout SwiftPM already resolved.
proto: deps
	@command -v protoc >/dev/null || ./scripts/install-deps.sh protobuf-compiler
	$(SWIFT) package resolve
	$(SWIFT) build -c release --package-path .build/checkouts/swift-protobuf --product protoc-gen-swift
	cd Sources/ONNXProto/proto && protoc \
	  --plugin=protoc-gen-swift=$(abspath .build/checkouts/swift-protobuf/.build/release/protoc-gen-swift) \
	  --swift_out=.. --swift_opt=Visibility=Public onnx-ml.proto onnx-light.proto

# Each fuzz target runs SECONDS seconds, one after another, one process (scripts/fuzz.sh); prints
# executions per target; a crasher is minimized into Tests/FuzzRegressions/<target>/ (replayed by
# `make unit`) and makes this fail. Not part of `make test`; .ci/run adds a 30 s smoke.
FUZZ_SECONDS := $(or $(SECONDS),60)
fuzz: deps
	./scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf .build Fuzz/.build Fuzz/.build-opt
