// Replays a fuzz harness over its committed inputs (seed corpus + crash regressions) as a plain
// GoogleTest, so every compiler and every `make test` runs them, not only clang fuzz builds.
// A harness reports a broken invariant with std::abort(), which fails the test run; the log
// names the input that was running.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::filesystem::path> InputFiles() {
  std::vector<std::filesystem::path> files;
  for (absl::string_view dir : absl::StrSplit(LONGENC_FUZZ_INPUT_DIRS, ':')) {
    const std::filesystem::path path(std::string{dir});
    // git keeps no empty directories: a target without regressions has no such folder.
    if (!std::filesystem::is_directory(path)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FuzzReplay, EveryCommittedInputRunsCleanly) {
  const std::vector<std::filesystem::path> files = InputFiles();
  ASSERT_FALSE(files.empty()) << "no inputs under " << LONGENC_FUZZ_INPUT_DIRS;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    ASSERT_TRUE(in) << file;
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::cerr << "replaying " << file.string() << " (" << bytes.size() << " bytes)\n";
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
              0)
        << file;
  }
}

}  // namespace
