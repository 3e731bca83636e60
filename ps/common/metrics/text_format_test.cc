#include "ps/common/metrics/text_format.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace metrics {
namespace internal {
namespace {

TEST(FormatValueTest, IntegralValuesPrintAsIntegers) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(1e12), "1000000000000");
  EXPECT_EQ(FormatValue(9007199254740991.0), "9007199254740991");
}

TEST(FormatValueTest, FractionsPrintInTheShortestFormThatRoundTrips) {
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatValue(123456.789), "123456.789");
  EXPECT_EQ(FormatValue(-0.5), "-0.5");
  EXPECT_EQ(FormatValue(1796049928.8757079), "1796049928.8757079");
}

TEST(FormatValueTest, TinyAndHugeValuesUseExponentsLikeGosClient) {
  EXPECT_EQ(FormatValue(0.0001), "0.0001");
  EXPECT_EQ(FormatValue(0.0005), "0.0005");
  EXPECT_EQ(FormatValue(0.00025), "0.00025");
  EXPECT_EQ(FormatValue(0.000025), "2.5e-05");
  EXPECT_EQ(FormatValue(-1.5e-07), "-1.5e-07");
  EXPECT_EQ(FormatValue(1.5e20), "150000000000000000000");
  EXPECT_EQ(FormatValue(1.5e21), "1.5e+21");
  EXPECT_EQ(FormatValue(1e300), "1e+300");
}

TEST(FormatValueTest, EveryFormParsesBackToTheSameDouble) {
  for (const double v : {1.0 / 3, 123456.789, 5e-324, 1.7976931348623157e308,
                         -2.2250738585072014e-308}) {
    // strtod, not std::stod: that throws on subnormals.
    EXPECT_EQ(std::strtod(FormatValue(v).c_str(), nullptr), v)
        << FormatValue(v);
  }
  // Doubles from random bit patterns: every exponent and digit count.
  std::mt19937_64 bits(42);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t pattern = bits();
    double v;
    std::memcpy(&v, &pattern, sizeof(v));
    if (!std::isfinite(v)) continue;
    ASSERT_EQ(std::strtod(FormatValue(v).c_str(), nullptr), v)
        << FormatValue(v);
  }
}

TEST(FormatValueTest, InfinitiesAndNanAreSpelledAsPrometheusExpects) {
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(EscapeTest, HelpEscapesBackslashAndNewlineButNotQuotes) {
  std::string out;
  AppendEscapedHelp("a\\b\nc\"d", &out);
  EXPECT_EQ(out, "a\\\\b\\nc\"d");
}

TEST(EscapeTest, LabelValueEscapesBackslashQuoteAndNewline) {
  std::string out;
  AppendEscapedLabelValue("a\\b\nc\"d", &out);
  EXPECT_EQ(out, "a\\\\b\\nc\\\"d");
}

TEST(FormatLabelBlockTest, LabelsAreSortedByNameAndValuesEscaped) {
  EXPECT_EQ(FormatLabelBlock({{"zone", "b"}, {"code", "say \"hi\""}}),
            "code=\"say \\\"hi\\\"\",zone=\"b\"");
  EXPECT_EQ(FormatLabelBlock({}), "");
}

TEST(NameValidationTest, MetricNamesFollowThePrometheusGrammar) {
  EXPECT_TRUE(IsValidMetricName("tessera_ps_push_requests_total"));
  EXPECT_TRUE(IsValidMetricName("job:rate5m"));
  EXPECT_TRUE(IsValidMetricName("_x1"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("1x"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName("a b"));
}

TEST(NameValidationTest, LabelNamesFollowThePrometheusGrammar) {
  EXPECT_TRUE(IsValidLabelName("shard"));
  EXPECT_TRUE(IsValidLabelName("_a1"));
  EXPECT_FALSE(IsValidLabelName(""));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("9a"));
}

}  // namespace
}  // namespace internal
}  // namespace metrics
}  // namespace tessera
