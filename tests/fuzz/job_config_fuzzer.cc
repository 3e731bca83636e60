// Fuzzes the job config parser shard 0 runs on --job_config
// (ps/common/job_config.h): arbitrary text through ParseJobConfig.
//
// Checked besides "no crash, no sanitizer report": a rejection is
// InvalidArgument with a message; an accepted config validates again, keeps
// its documented bounds, and survives printing and parsing back unchanged
// (what `tessera status` shows and a supervisor re-reads is the same job).

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "ps/common/job_config.h"

namespace {

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

bool SameJob(const tessera::v1::JobConfig& a, const tessera::v1::JobConfig& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  return differencer.Compare(a, b);
}

}  // namespace

// Malformed input is expected: keep protobuf's parse warnings out of the
// fuzzer's output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto job = tessera::ParseJobConfig(text);
  if (!job.ok()) {
    FUZZ_CHECK(job.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(!job.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(tessera::ValidateJobConfig(*job).ok());
  // Defaults are applied and the bounds ValidateJobConfig documents hold.
  FUZZ_CHECK(!job->name().empty());
  FUZZ_CHECK(job->batch_size() >= 1);
  FUZZ_CHECK(job->epochs() >= 1);
  FUZZ_CHECK(job->partitions_per_epoch() >= 1);
  FUZZ_CHECK(job->lease_timeout_s() > 0 &&
             std::isfinite(job->lease_timeout_s()));
  FUZZ_CHECK(job->optimizer().learning_rate() > 0 &&
             std::isfinite(job->optimizer().learning_rate()));
  const int bound = tessera::StalenessBound(*job);
  FUZZ_CHECK(bound >= -1);
  for (const char* tensor : {"fc1.weight", "fc1.bias", "", "emb"}) {
    (void)tessera::OptimizerFor(*job, tensor);
  }
  // Applying the defaults again changes nothing.
  tessera::v1::JobConfig again = *job;
  tessera::ApplyJobDefaults(&again);
  FUZZ_CHECK(SameJob(again, *job));
  // Printed and parsed back, it is the same job.
  std::string printed;
  FUZZ_CHECK(google::protobuf::TextFormat::PrintToString(*job, &printed));
  auto reparsed = tessera::ParseJobConfig(printed);
  if (!reparsed.ok()) {
    fprintf(stderr, "accepted config does not parse back: %s\n%s\n",
            std::string(reparsed.status().message()).c_str(), printed.c_str());
    abort();
  }
  FUZZ_CHECK(SameJob(*reparsed, *job));
  return 0;
}
