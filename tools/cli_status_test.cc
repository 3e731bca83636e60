#include "tools/cli_status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CliStatusTest, PrintsFailureBadLinesAndTestAuc) {
  v1::JobStatus job;
  job.set_job_name("ctr");
  job.set_epoch(0);
  job.set_epochs(3);
  job.set_bad_lines(12);
  job.set_first_bad_line("day_0.tsv:17: 12 fields, expected 40");
  job.set_failed("12 bad input lines, more than max_bad_lines 10; first: ...");
  v1::EpochStats* e = job.add_epoch_stats();
  e->set_epoch(0);
  e->set_samples(100);
  e->set_loss_sum(50);
  e->set_correct(70);
  e->set_test_samples(10);
  e->set_test_correct(8);
  e->set_test_auc(0.8125);
  const std::string out = FormatJobStatus(job);
  EXPECT_THAT(out, HasSubstr("job ctr: FAILED, epoch 1 of 3"));
  EXPECT_THAT(out, HasSubstr("FAILED: 12 bad input lines, more than "
                             "max_bad_lines 10"));
  EXPECT_THAT(out, HasSubstr("bad input lines: 12 skipped; first: "
                             "day_0.tsv:17: 12 fields, expected 40"));
  EXPECT_THAT(out,
              HasSubstr("test acc 80.00%, test loss 0.0000, test AUC 0.8125"));
}

TEST(CliStatusTest, HealthyJobHasNoFailureOrBadLineLines) {
  v1::JobStatus job;
  job.set_job_name("mnist");
  job.set_epochs(1);
  job.set_finished(true);
  v1::EpochStats* e = job.add_epoch_stats();
  e->set_samples(10);
  const std::string out = FormatJobStatus(job);
  EXPECT_THAT(out, HasSubstr("job mnist: FINISHED"));
  EXPECT_THAT(out, Not(HasSubstr("FAILED")));
  EXPECT_THAT(out, Not(HasSubstr("bad input")));
  EXPECT_THAT(out, Not(HasSubstr("AUC")));
}

}  // namespace
}  // namespace tessera
