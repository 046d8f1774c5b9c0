// What `longenc embed` prints when lines fail: the line list and the resume command.
#include "client/embed_report.h"

#include "gtest/gtest.h"

namespace longenc::client {
namespace {

TEST(LineRanges, ConsecutiveLinesMergeAndTheUnsentRestIsOpenEnded) {
  LineRanges r;
  EXPECT_TRUE(r.empty());
  for (int64_t line : {3, 17, 18, 19, 20, 45}) r.Add(line);
  EXPECT_EQ(r.ToString(), "3,17-20,45");
  r.AddFrom(46);  // the failed batch runs straight into what was never sent
  EXPECT_EQ(r.ToString(), "3,17-20,45-");
  LineRanges gap;
  gap.Add(7);
  gap.AddFrom(401);
  EXPECT_EQ(gap.ToString(), "7,401-");
}

TEST(ResumeCommand, AddsResumeQuotesWordsAndLeavesTheApiKeyOut) {
  EXPECT_EQ(ResumeCommand({"longenc", "embed", "--jsonl=my docs.jsonl", "--output=o.jsonl"}),
            "longenc embed '--jsonl=my docs.jsonl' --output=o.jsonl --resume");
  EXPECT_EQ(ResumeCommand({"longenc", "embed", "--api_key=s3cret", "--output=o.npy", "--resume"}),
            "longenc embed --output=o.npy --resume");
  EXPECT_EQ(ResumeCommand({"longenc", "embed", "--api_key", "s3cret", "--output=o.npy"}),
            "longenc embed --output=o.npy --resume");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote(""), "''");
}

}  // namespace
}  // namespace longenc::client
