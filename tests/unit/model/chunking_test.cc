// Late chunking's span rule (model/chunking.h): fixed-size chunks for every combination of
// length, size and overlap, and caller spans against a brute-force overlap check.
#include "model/chunking.h"

#include <random>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longenc::model {
namespace {

using Offsets = std::vector<std::pair<int32_t, int32_t>>;
using ::testing::HasSubstr;

TEST(ContentTokens, StripsOneClsAndOneSep) {
  const std::vector<int32_t> ids = {101, 7, 8, 102};
  EXPECT_EQ(ContentTokens(ids, 101, 102), (TokenRange{1, 3}));
  EXPECT_EQ(ContentTokens(std::vector<int32_t>{101, 102, 102}, 101, 102), (TokenRange{1, 2}));
  EXPECT_EQ(ContentTokens(std::vector<int32_t>{7, 8}, 101, 102), (TokenRange{0, 2}));
  EXPECT_EQ(ContentTokens(std::vector<int32_t>{101, 102}, 101, 102), (TokenRange{1, 1}));
  EXPECT_EQ(ContentTokens(std::vector<int32_t>{101, 8}, -1, -1), (TokenRange{0, 2}));
}

// The rule of docs/API.md, checked for every length up to 300, size up to 40 and overlap.
TEST(FixedChunks, FollowTheRuleForEveryLengthSizeAndOverlap) {
  for (int64_t begin : {0, 1}) {
    for (int64_t length = 0; length <= 300; ++length) {
      const TokenRange content{begin, begin + length};
      for (int64_t size = 1; size <= 40; ++size) {
        for (int64_t overlap = 0; overlap < size; ++overlap) {
          SCOPED_TRACE(testing::Message() << "length " << length << " size " << size
                                          << " overlap " << overlap);
          const std::vector<TokenRange> chunks = FixedChunks(content, size, overlap);
          ASSERT_EQ(static_cast<int64_t>(chunks.size()), CountFixedChunks(content, size, overlap));
          if (length == 0) {
            ASSERT_TRUE(chunks.empty());
            continue;
          }
          ASSERT_FALSE(chunks.empty());
          for (size_t k = 0; k < chunks.size(); ++k) {
            const TokenRange& c = chunks[k];
            ASSERT_EQ(c.begin, content.begin + static_cast<int64_t>(k) * (size - overlap));
            ASSERT_EQ(c.end, std::min(c.begin + size, content.end));
            ASSERT_LT(c.begin, c.end);
            // Only the last chunk reaches the last content token.
            ASSERT_EQ(c.end == content.end, k + 1 == chunks.size());
          }
        }
      }
    }
  }
}

TEST(FixedChunks, LongDocument) {
  // 100,000 content tokens after [CLS], 256-token chunks with 32 shared.
  const std::vector<TokenRange> chunks = FixedChunks({1, 100001}, 256, 32);
  ASSERT_EQ(chunks.size(), 447u);  // 1 + ceil((100000 - 256) / 224)
  EXPECT_EQ(chunks.front(), (TokenRange{1, 257}));
  EXPECT_EQ(chunks.back().end, 100001);
}

// Tokens of `words` words of 3 bytes separated by one space: word w is bytes [4w, 4w + 3);
// [CLS] and [SEP] at (0, 0) around them.
Offsets WordOffsets(int words) {
  Offsets o = {{0, 0}};
  for (int w = 0; w < words; ++w) o.push_back({4 * w, 4 * w + 3});
  o.push_back({0, 0});
  return o;
}

TEST(SpanChunks, TokensThatOverlapEachSpan) {
  const Offsets offsets = WordOffsets(5);  // text of 19 bytes
  const TokenRange content{1, 6};
  const Offsets spans = {{0, 3}, {2, 5}, {4, 19}, {18, 19}};
  absl::StatusOr<std::vector<TokenRange>> chunks = SpanChunks(offsets, content, 19, spans);
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  EXPECT_THAT(*chunks, ::testing::ElementsAre(TokenRange{1, 2}, TokenRange{1, 3},
                                              TokenRange{2, 6}, TokenRange{5, 6}));
}

TEST(SpanChunks, AgreesWithBruteForceOnRandomSpans) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    // Tokens of random lengths with random gaps (gaps are whitespace: no token).
    Offsets offsets = {{0, 0}};
    int32_t at = 0;
    const int tokens = 1 + static_cast<int>(rng() % 40);
    for (int t = 0; t < tokens; ++t) {
      at += static_cast<int32_t>(rng() % 3);
      const int32_t len = 1 + static_cast<int32_t>(rng() % 5);
      offsets.push_back({at, at + len});
      at += len;
    }
    offsets.push_back({0, 0});
    const int32_t text = at + static_cast<int32_t>(rng() % 3);
    const TokenRange content{1, 1 + tokens};
    int32_t start = static_cast<int32_t>(rng() % (text));
    int32_t end = start + 1 + static_cast<int32_t>(rng() % (text - start));
    const Offsets spans = {{start, end}};
    std::vector<int64_t> overlapping;
    for (int64_t t = content.begin; t < content.end; ++t) {
      if (offsets[t].first < end && offsets[t].second > start) overlapping.push_back(t);
    }
    absl::StatusOr<std::vector<TokenRange>> chunks = SpanChunks(offsets, content, text, spans);
    if (overlapping.empty()) {
      ASSERT_FALSE(chunks.ok());
      EXPECT_THAT(chunks.status().message(), HasSubstr("overlaps no token"));
      continue;
    }
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    ASSERT_EQ((*chunks)[0], (TokenRange{overlapping.front(), overlapping.back() + 1}));
    ASSERT_EQ(static_cast<size_t>(overlapping.back() + 1 - overlapping.front()),
              overlapping.size());
  }
}

TEST(SpanChunks, RefusesBadSpansNamingThem) {
  const Offsets offsets = WordOffsets(5);
  const TokenRange content{1, 6};
  auto message = [&](Offsets spans) {
    return std::string(SpanChunks(offsets, content, 19, spans).status().message());
  };
  EXPECT_THAT(message({{0, 3}, {5, 20}}), HasSubstr("spans[1] = [5, 20) is out of range"));
  EXPECT_THAT(message({{-1, 3}}), HasSubstr("spans[0] = [-1, 3) is out of range"));
  EXPECT_THAT(message({{4, 4}}), HasSubstr("spans[0] = [4, 4) is out of range"));
  EXPECT_THAT(message({{4, 8}, {0, 3}}), HasSubstr("spans[1] = [0, 3) is unordered"));
  EXPECT_THAT(message({{3, 4}}), HasSubstr("spans[0] = [3, 4) overlaps no token"));
}

}  // namespace
}  // namespace longenc::model
