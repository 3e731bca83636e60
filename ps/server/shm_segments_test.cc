#include "ps/server/shm_segments.h"

#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/reject_reason.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

ShmSegmentsOptions Options(int max_segments) {
  ShmSegmentsOptions options;
  options.segment_bytes = 1 << 20;
  options.max_segments = max_segments;
  return options;
}

TEST(ShmSegmentsTest, AttachGivesEachClientItsOwnSegment) {
  metrics::Registry registry;
  ShmSegments segments(Options(4), &registry);
  auto a = segments.Attach(ShmHostId());
  auto b = segments.Attach(ShmHostId());
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE((*a)->token(), (*b)->token());
  EXPECT_EQ((*a)->bytes(), 1 << 20);
  EXPECT_EQ(segments.Find((*a)->token()), *a);
  EXPECT_EQ(segments.Find((*b)->token()), *b);
  EXPECT_EQ(segments.Find(12345), nullptr);
  // A client maps it by pid and fd.
  EXPECT_THAT(
      ShmSegment::Attach(getpid(), (*a)->fd(), (*a)->bytes(), (*a)->token()),
      IsOk());
  EXPECT_THAT(registry.Serialize(), HasSubstr("tessera_ps_shm_segments 2"));
}

TEST(ShmSegmentsTest, TheLeastRecentlyUsedSegmentIsClosedFirst) {
  ShmSegments segments(Options(2), nullptr);
  auto a = segments.Attach(ShmHostId());
  auto b = segments.Attach(ShmHostId());
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_NE(segments.Find((*a)->token()), nullptr);  // a is now the newest.
  auto c = segments.Attach(ShmHostId());
  ASSERT_THAT(c, IsOk());
  EXPECT_NE(segments.Find((*a)->token()), nullptr);
  EXPECT_EQ(segments.Find((*b)->token()), nullptr);
  EXPECT_NE(segments.Find((*c)->token()), nullptr);
  // What a request still holds stays mapped.
  EXPECT_EQ((*b)->data()[(*b)->bytes() - 1], 0);
}

TEST(ShmSegmentsTest, ClientsElsewhereAndAShardWithItOffAreRefused) {
  ShmSegments segments(Options(2), nullptr);
  EXPECT_THAT(segments.Attach("another-boot-id"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("another machine")));
  EXPECT_EQ(RejectReasonOf(segments.Attach("another-boot-id").status()),
            kReasonShmUnavailable);
  EXPECT_THAT(segments.Attach(""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ShmSegmentsOptions off;
  off.segment_bytes = 0;
  ShmSegments none(off, nullptr);
  EXPECT_FALSE(none.enabled());
  EXPECT_THAT(none.Attach(ShmHostId()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("--shm_segment_bytes=0")));
}

}  // namespace
}  // namespace tessera
