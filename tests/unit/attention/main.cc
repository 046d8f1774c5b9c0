// gtest main for the attention tests. Tests named *_CUDA need a GPU: without one they skip
// themselves (GTEST_SKIP), so the run counts and lists them (scripts/run_tests.sh).
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
