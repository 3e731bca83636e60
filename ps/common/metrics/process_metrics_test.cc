#include "ps/common/metrics/process_metrics.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace metrics {
namespace {

using ::testing::HasSubstr;

// The value of the sample line "<name> <value>" in `text`; NaN if absent.
double SampleValue(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, name + " ")) {
      double value;
      if (absl::SimpleAtod(line, &value)) return value;
    }
  }
  return std::nan("");
}

TEST(ParseProcStatTest, ReadsTheFieldsAfterTheCommandName) {
  // A command name with spaces and parentheses, as a process may choose.
  const std::string stat =
      "1234 (we ird) (name) S 1 1234 1234 0 -1 4194560 100 0 0 0 "
      "250 50 0 0 20 0 8 0 98765 123456789 4321 18446744073709551615 "
      "1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 0 0 0 0\n";
  absl::StatusOr<internal::ProcStat> parsed = internal::ParseProcStat(stat);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->utime_ticks, 250);
  EXPECT_EQ(parsed->stime_ticks, 50);
  EXPECT_EQ(parsed->starttime_ticks, 98765);
  EXPECT_EQ(parsed->vsize_bytes, 123456789);
  EXPECT_EQ(parsed->rss_pages, 4321);
}

TEST(ParseProcStatTest, TruncatedOrGarbledContentIsInvalidArgument) {
  EXPECT_THAT(
      internal::ParseProcStat("1234 (x) S 1 2 3"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field 14")));
  EXPECT_THAT(internal::ParseProcStat("no parenthesis"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      internal::ParseProcStat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 50 0 0 20 0 "
                              "8 0 1 2 3"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field 14")));
}

TEST(ParseBootTimeTest, ReadsTheBtimeLine) {
  EXPECT_THAT(internal::ParseBootTime("cpu  1 2 3\nbtime 1700000000\n"),
              IsOkAndHolds(1700000000));
  EXPECT_THAT(internal::ParseBootTime("cpu  1 2 3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ProcessMetricsTest, ExportsTheStandardProcessMetricsAtScrapeTime) {
  Registry registry;
  RegisterProcessMetrics(&registry);
  const std::string text = registry.Serialize();

  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE process_resident_memory_bytes gauge\n"));
  EXPECT_GE(SampleValue(text, "process_cpu_seconds_total"), 0);
  EXPECT_GT(SampleValue(text, "process_resident_memory_bytes"), 0);
  EXPECT_GE(SampleValue(text, "process_virtual_memory_bytes"),
            SampleValue(text, "process_resident_memory_bytes"));
  EXPECT_GT(SampleValue(text, "process_open_fds"), 0);
  EXPECT_GE(SampleValue(text, "process_max_fds"),
            SampleValue(text, "process_open_fds"));
  // After 2020-01-01: a sanity check of the units, not of timing.
  EXPECT_GT(SampleValue(text, "process_start_time_seconds"), 1577836800);
}

TEST(ProcessMetricsTest, OpenFdsFollowsDescriptorsOpenedBetweenScrapes) {
  Registry registry;
  RegisterProcessMetrics(&registry);
  const double before = SampleValue(registry.Serialize(), "process_open_fds");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const double during = SampleValue(registry.Serialize(), "process_open_fds");
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(during, before + 2);
}

TEST(ProcessMetricsTest, RegisteringTwiceExportsOneSetOfSeries) {
  Registry registry;
  RegisterProcessMetrics(&registry);
  RegisterProcessMetrics(&registry);
  const std::string text = registry.Serialize();
  const size_t first = text.find("\nprocess_cpu_seconds_total ");
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(text.find("\nprocess_cpu_seconds_total ", first + 1),
            std::string::npos);
}

TEST(BuildInfoTest, ExportsOneSeriesPerComponentWithTheVersion) {
  Registry registry;
  RegisterBuildInfo(&registry, "ps");
  RegisterBuildInfo(&registry, "worker");
  EXPECT_EQ(registry.Serialize(),
            "# HELP tessera_build_info A metric with a constant '1' value "
            "labeled by the component and version of Tessera.\n"
            "# TYPE tessera_build_info gauge\n"
            "tessera_build_info{component=\"ps\",version=\"0.1.0\"} 1\n"
            "tessera_build_info{component=\"worker\",version=\"0.1.0\"} 1\n");
}

}  // namespace
}  // namespace metrics
}  // namespace tessera
