# The two commands of the README's quick start, plus a few for development.
# Each runs tools/setup.sh first, which installs what is missing (as root).

BAZEL ?= bazel
BAZEL_FLAGS ?=

.PHONY: setup test build bench fuzz format clean

setup:
	@tools/setup.sh

# Builds everything, runs every test and prints "N passed, N failed".
test: setup
	@tools/run_tests.sh $(BAZEL_FLAGS)

build: setup
	$(BAZEL) build $(BAZEL_FLAGS) //...

bench: setup
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:metrics_bench

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	$(BAZEL) clean
