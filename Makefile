# Thin wrapper over CMake: `make run` and `make test` work on a fresh Debian
# machine (missing packages are installed with apt-get first).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
HOST       ?= 127.0.0.1
PORT       ?= 8000

.PHONY: all deps build run test test-release test-asan install clean format fuzz

all: build

deps:
	@./scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

# The example plugins, and examples/static (copied into the build, with its
# precompressed siblings) at /static; examples/files keeps its files in
# FILES_DIR.
FILES_DIR  ?= $(BUILD)/files-data

run: build
	EVICORN_FILES_DIR=$(FILES_DIR) ./$(BUILD)/evicorn --host $(HOST) --port $(PORT) \
		--plugins $(BUILD)/plugins --static /static=$(BUILD)/examples/static

test: test-release test-asan

test-release: build
	ctest --test-dir $(BUILD) --output-on-failure -j 2

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DEVICORN_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(ASAN_BUILD) --output-on-failure -j 2

# libFuzzer targets (clang), FUZZ_SECONDS each (default 60); see docs/reliability.md.
fuzz:
	@./scripts/install-deps --fuzz
	./scripts/fuzz

install: build
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
