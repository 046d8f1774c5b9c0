#include "common/process_memory.h"

#include <cstring>
#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace longenc {
namespace {

TEST(ProcStatus, ParsesResidentAndPeak) {
  const std::string text =
      "Name:\tlongenc-server\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
  absl::StatusOr<ProcessMemory> memory = ParseProcStatus(text);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(memory->resident_bytes, 1024 * 1024);
  EXPECT_EQ(memory->peak_resident_bytes, 2048 * 1024);
}

TEST(ProcStatus, RejectsMissingOrMalformedLines) {
  EXPECT_EQ(ParseProcStatus("Name:\tx\nVmRSS:\t1 kB\n").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseProcStatus("VmRSS:\tlots kB\nVmHWM:\t1 kB\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseProcStatus("VmRSS:\t12 MB\nVmHWM:\t1 kB\n").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The real file: after a reset, touching 64 MiB raises the peak by about that much.
TEST(ProcessMemory, PeakFollowsTouchedMemoryAfterReset) {
  if (!ResetPeakResident()) GTEST_SKIP() << "this kernel does not allow resetting VmHWM";
  absl::StatusOr<ProcessMemory> before = ReadProcessMemory();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_GT(before->resident_bytes, 1 << 20);  // a gtest binary is more than 1 MiB resident
  EXPECT_GE(before->peak_resident_bytes, before->resident_bytes);
  constexpr size_t kBytes = size_t{64} << 20;
  auto block = std::make_unique<char[]>(kBytes);
  std::memset(block.get(), 1, kBytes);
  absl::StatusOr<ProcessMemory> after = ReadProcessMemory();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GE(after->peak_resident_bytes - before->peak_resident_bytes, int64_t{60} << 20);
  EXPECT_EQ(block[kBytes - 1], 1);
}

}  // namespace
}  // namespace longenc
