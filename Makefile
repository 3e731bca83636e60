# The two commands of the README's quick start, plus a few for development.
# Each runs tools/setup.sh first, which installs what is missing (as root).

BAZEL ?= bazel
BAZEL_FLAGS ?=

.PHONY: setup test demo build bench format clean

setup:
	@tools/setup.sh

# Builds everything, runs every test and prints "N passed, N failed".
test: setup
	@tools/run_tests.sh $(BAZEL_FLAGS)

# Trains Fashion-MNIST on 2 local shards and 2 workers, evaluates the model and
# writes it to tessera-demo-model.pt. DEMO_FLAGS="--demo_epochs=2" etc.
DEMO_FLAGS ?=
demo: setup
	$(BAZEL) build $(BAZEL_FLAGS) //tools:tessera //ps/server:tessera-ps //worker:tessera-worker
	"$$($(BAZEL) info $(BAZEL_FLAGS) bazel-bin 2>/dev/null)/tools/tessera" demo $(DEMO_FLAGS)

build: setup
	$(BAZEL) build $(BAZEL_FLAGS) //...

bench: setup
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:metrics_bench

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	$(BAZEL) clean
