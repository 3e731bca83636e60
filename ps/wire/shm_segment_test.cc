#include "ps/wire/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"

namespace tessera {
namespace {

constexpr int64_t kBytes = 1 << 20;

TEST(ShmSegmentTest, AnotherMappingSeesTheSameBytes) {
  auto made = ShmSegment::Create(kBytes);
  ASSERT_THAT(made, IsOk());
  auto attached =
      ShmSegment::Attach(getpid(), (*made)->fd(), kBytes, (*made)->token());
  ASSERT_THAT(attached, IsOk());
  std::memcpy((*made)->data() + 4096, "values", 6);
  EXPECT_EQ(std::memcmp((*attached)->data() + 4096, "values", 6), 0);
  std::memcpy((*attached)->data() + 8192, "grads", 5);
  EXPECT_EQ(std::memcmp((*made)->data() + 8192, "grads", 5), 0);
  EXPECT_NE((*made)->token(), 0u);
}

TEST(ShmSegmentTest, ARemoteEndCannotShrinkOrGrowIt) {
  auto made = ShmSegment::Create(kBytes);
  ASSERT_THAT(made, IsOk());
  auto attached =
      ShmSegment::Attach(getpid(), (*made)->fd(), kBytes, (*made)->token());
  ASSERT_THAT(attached, IsOk());
  EXPECT_NE(ftruncate((*attached)->fd(), 4096), 0);
  EXPECT_NE(ftruncate((*attached)->fd(), 2 * kBytes), 0);
  EXPECT_NE(fcntl((*attached)->fd(), F_ADD_SEALS, F_SEAL_WRITE), 0);
  // Still mapped whole: the last byte reads.
  EXPECT_EQ((*made)->data()[kBytes - 1], 0);
}

TEST(ShmSegmentTest, AttachRefusesWhatIsNotTheSegment) {
  auto made = ShmSegment::Create(kBytes);
  ASSERT_THAT(made, IsOk());
  const int fd = (*made)->fd();
  const uint64_t token = (*made)->token();
  EXPECT_THAT(ShmSegment::Attach(getpid(), fd, kBytes, token + 1),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ShmSegment::Attach(getpid(), fd, kBytes / 2, token),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ShmSegment::Attach(getpid(), 0, kBytes, token),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ShmSegment::Attach(0, fd, kBytes, token),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ShmSegment::Attach(getpid(), -1, kBytes, token),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ShmSegment::Attach(getpid(), fd, int64_t{1} << 62, token),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // An unsealed file with the right bytes is still refused.
  const int plain = memfd_create("plain", MFD_CLOEXEC);
  ASSERT_GE(plain, 0);
  ASSERT_EQ(ftruncate(plain, kBytes), 0);
  ASSERT_EQ(pwrite(plain, (*made)->data(), 16, 0), 16);
  EXPECT_THAT(ShmSegment::Attach(getpid(), plain, kBytes, token),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  close(plain);
}

TEST(ShmSegmentTest, ContainsOnlyRangesPastTheHeader) {
  auto made = ShmSegment::Create(kBytes);
  ASSERT_THAT(made, IsOk());
  const ShmSegment& s = **made;
  EXPECT_TRUE(s.Contains(ShmSegment::kHeaderBytes, 4));
  EXPECT_TRUE(s.Contains(kBytes - 4, 4));
  EXPECT_FALSE(s.Contains(0, 4));
  EXPECT_FALSE(s.Contains(kBytes - 4, 8));
  EXPECT_FALSE(s.Contains(-64, 8));
  EXPECT_FALSE(s.Contains(64, -1));
  EXPECT_FALSE(s.Contains(INT64_MAX - 2, 8));
  EXPECT_FALSE(s.Contains(64, INT64_MAX));
}

TEST(ShmSegmentTest, CreateRefusesSizesOutOfRange) {
  EXPECT_THAT(ShmSegment::Create(0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ShmSegment::Create(ShmSegment::kHeaderBytes),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ShmSegment::Create(int64_t{1} << 50),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ShmSegmentTest, HostIdIsTheBootId) {
  EXPECT_EQ(ShmHostId().size(), 36u) << ShmHostId();
}

}  // namespace
}  // namespace tessera
