# The two commands of the README's quick start, plus a few for development.
# Each runs tools/setup.sh first, which installs what is missing (as root).

BAZEL ?= bazel
BAZEL_FLAGS ?=

.PHONY: setup test demo build bench format clean fuzz test-asan fault reliability-report image image-test

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

# Benchmarks print their figures against a baseline measured in the same run.
bench: setup
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:metrics_bench
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:data_plane_bench
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:training_bench
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:dlrm_bench
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:row_memory_bench
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:pull_bench
	$(BAZEL) run -c opt $(BAZEL_FLAGS) //bench:cold_rows_bench

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

# The image, with podman, from the Dockerfile (a Debian base is made with
# debootstrap when none is present). IMAGE=localhost/tessera:dev by default.
IMAGE ?= localhost/tessera:dev
image: setup
	@tools/image.sh $(IMAGE)

# The image run as the default deployment runs it (also part of `make test`).
image-test: setup
	@tests/image/image_test.sh

clean:
	$(BAZEL) clean

# The fuzzers (tests/fuzz/, clang + ASan + UBSan), each for FUZZ_SECONDS
# (`make test` runs them for a fixed number of inputs only). New inputs and
# any crashing input go to FUZZ_DIR; the committed seeds stay as they are.
FUZZ_SECONDS ?= 120
FUZZ_DIR ?= /tmp/tessera-fuzz
FUZZERS = data_wire_fuzzer job_config_fuzzer shard_request_fuzzer shard_state_fuzzer
fuzz: setup
	$(BAZEL) build $(BAZEL_FLAGS) $(addprefix //tests/fuzz:,$(FUZZERS))
	@bin="$$($(BAZEL) info $(BAZEL_FLAGS) bazel-bin 2>/dev/null)"; \
	for f in $(FUZZERS); do \
	  mkdir -p "$(FUZZ_DIR)/$$f"; \
	  echo "fuzz: $$f for $(FUZZ_SECONDS)s (new inputs in $(FUZZ_DIR)/$$f)"; \
	  "$$bin/tests/fuzz/$$f" -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
	    -artifact_prefix="$(FUZZ_DIR)/$$f-" "$(FUZZ_DIR)/$$f" \
	    "tests/fuzz/corpus/$$f" >"$(FUZZ_DIR)/$$f.log" 2>&1; rc=$$?; \
	  tail -n 12 "$(FUZZ_DIR)/$$f.log"; \
	  if [ $$rc -ne 0 ]; then \
	    echo "fuzz: $$f FAILED; log $(FUZZ_DIR)/$$f.log, input $(FUZZ_DIR)/$$f-*"; \
	    exit 1; \
	  fi; \
	done

# ps/ unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
# (.bazelrc's --config=asan; its own disk cache). Not part of `make test`:
# it rebuilds ps/ instrumented, which does not fit that time budget.
test-asan: setup
	$(BAZEL) test $(BAZEL_FLAGS) --config=asan //ps/...

# The fault-injection suite alone, its report streamed to the terminal.
# FAULT_FLAGS="--test_env=TESSERA_FAULT_LONG=1" runs the long variant.
FAULT_FLAGS ?=
fault: setup
	$(BAZEL) test $(BAZEL_FLAGS) $(FAULT_FLAGS) --test_output=streamed //tests/fault:fault_test

# Reruns the fault suite and the fuzz tests, then writes docs/reliability.md
# from their output (tests/fault/assemble_report.py).
reliability-report: setup
	-$(BAZEL) test $(BAZEL_FLAGS) $(FAULT_FLAGS) --nocache_test_results //tests/fault:fault_test //tests/fuzz:all
	python3 tests/fault/assemble_report.py \
	  --testlogs "$$($(BAZEL) info $(BAZEL_FLAGS) bazel-testlogs 2>/dev/null)" \
	  --out docs/reliability.md
