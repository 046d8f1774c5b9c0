// Long late chunking's window plan (model/late_windows.h): the tiling windows are position mode
// "chunk"'s, every chunk token is taken from exactly one window, and a chunk that fits a window
// is taken from the one where it has the most context (checked against every candidate window).
#include "model/late_windows.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "model/chunking.h"

namespace longenc::model {
namespace {

// Every window of both kinds, before any is left out: (covered tokens).
std::vector<TokenRange> AllCandidates(int64_t n, int64_t window) {
  std::vector<TokenRange> all;
  for (int64_t start : {int64_t{1}, 1 + window / 2}) {
    for (int64_t begin = start; begin < n - 1; begin += window) {
      all.push_back(Covered({begin, std::min(begin + window, n - 1), false, {}}, n));
    }
  }
  return all;
}

int64_t MinContext(TokenRange c, TokenRange chunk) {
  return std::min(chunk.begin - c.begin, c.end - chunk.end);
}

TEST(PlanLateWindows, WithoutChunksTheWindowsTileTheDocument) {
  const std::vector<LateWindow> plan = PlanLateWindows(1300, 510, {});
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].begin, 1);
  EXPECT_EQ(plan[0].end, 511);
  EXPECT_EQ(plan[1].begin, 511);
  EXPECT_EQ(plan[1].end, 1021);
  EXPECT_EQ(plan[2].begin, 1021);
  EXPECT_EQ(plan[2].end, 1299);
  for (const LateWindow& w : plan) {
    EXPECT_TRUE(w.tiling);
    EXPECT_TRUE(w.segments.empty());
  }
}

TEST(PlanLateWindows, ChunkAcrossATilingBoundaryComesFromTheShiftedWindow) {
  // Windows [1,511) [256,766) [511,1021) [766,1276) [1021,1299); the last shifted one would
  // start at 1276 inside the last tiling window and is never planned.
  const std::vector<TokenRange> chunks = {{450, 600}, {1, 201}, {1200, 1299}};
  const std::vector<LateWindow> plan = PlanLateWindows(1300, 510, chunks);
  ASSERT_EQ(plan.size(), 4u);  // [766,1276) serves no chunk and is left out
  EXPECT_EQ(plan[1].begin, 256);
  EXPECT_FALSE(plan[1].tiling);
  ASSERT_EQ(plan[1].segments.size(), 1u);
  EXPECT_EQ(plan[1].segments[0].chunk, 0);  // 194 tokens before it and 166 after in [256,766)
  ASSERT_EQ(plan[0].segments.size(), 1u);
  EXPECT_EQ(plan[0].segments[0].chunk, 1);  // only the first window holds it
  ASSERT_EQ(plan[3].segments.size(), 1u);
  EXPECT_EQ(plan[3].segments[0].chunk, 2);  // [1021,1299) reaches the document's last token
}

TEST(PlanLateWindows, EveryChunkTokenComesFromOneWindowWithTheMostContext) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t window = std::uniform_int_distribution<int64_t>(2, 40)(rng);
    const int64_t n = std::uniform_int_distribution<int64_t>(window + 3, 12 * window)(rng);
    const int64_t size = std::uniform_int_distribution<int64_t>(1, 2 * window)(rng);
    const int64_t overlap = std::uniform_int_distribution<int64_t>(0, size - 1)(rng);
    // Chunks over [0, n) (token-id documents without [CLS]) or the content tokens.
    const TokenRange content = trial % 4 == 0 ? TokenRange{0, n} : TokenRange{1, n - 1};
    const std::vector<TokenRange> chunks = FixedChunks(content, size, overlap);
    SCOPED_TRACE(testing::Message() << "n " << n << " window " << window << " size " << size
                                    << " overlap " << overlap);
    const std::vector<LateWindow> plan = PlanLateWindows(n, window, chunks);
    const std::vector<TokenRange> candidates = AllCandidates(n, window);
    std::vector<std::vector<int>> taken(chunks.size());
    std::vector<int> segments(chunks.size(), 0);
    std::vector<int64_t> window_of(chunks.size(), -1);
    for (size_t w = 0; w < plan.size(); ++w) {
      if (w > 0) {
        ASSERT_LT(plan[w - 1].begin, plan[w].begin);
        ASSERT_LE(plan[w - 1].end, plan[w].end);
      }
      ASSERT_TRUE(plan[w].tiling || !plan[w].segments.empty());
      ASSERT_LE(plan[w].end - plan[w].begin, window);
      const TokenRange c = Covered(plan[w], n);
      for (const LateSegment& s : plan[w].segments) {
        ASSERT_LE(c.begin, s.begin);
        ASSERT_LE(s.end, c.end);
        ASSERT_LT(s.begin, s.end);
        const TokenRange& chunk = chunks[static_cast<size_t>(s.chunk)];
        auto& t = taken[static_cast<size_t>(s.chunk)];
        t.resize(static_cast<size_t>(chunk.end - chunk.begin), 0);
        for (int64_t k = s.begin; k < s.end; ++k) ++t[static_cast<size_t>(k - chunk.begin)];
        ++segments[static_cast<size_t>(s.chunk)];
        window_of[static_cast<size_t>(s.chunk)] = static_cast<int64_t>(w);
      }
    }
    // The tiling windows alone are position mode "chunk"'s windows.
    int64_t next = 1;
    for (const LateWindow& w : plan) {
      if (!w.tiling) continue;
      ASSERT_EQ(w.begin, next);
      next = w.end;
    }
    ASSERT_EQ(next, n - 1);
    for (size_t k = 0; k < chunks.size(); ++k) {
      const TokenRange& chunk = chunks[k];
      ASSERT_EQ(taken[k], std::vector<int>(static_cast<size_t>(chunk.end - chunk.begin), 1))
          << "chunk " << k;
      int64_t best = -1;
      for (const TokenRange& c : candidates) {
        if (c.begin <= chunk.begin && chunk.end <= c.end) {
          best = std::max(best, MinContext(c, chunk));
        }
      }
      if (chunk.end - chunk.begin <= window / 2 + 1) {
        ASSERT_GE(best, 0) << "chunk " << k;
      }
      if (best < 0) continue;  // fits no window: taken token by token
      ASSERT_EQ(segments[k], 1) << "chunk " << k;
      ASSERT_EQ(MinContext(Covered(plan[static_cast<size_t>(window_of[k])], n), chunk), best)
          << "chunk " << k;
    }
  }
}

TEST(PlanLateWindows, AChunkLongerThanAWindowTakesEachTokenFromWhereItIsMostCentral) {
  for (int64_t window : {9, 10, 64}) {
    for (int64_t n = window + 3; n < 6 * window; n += 7) {
      const std::vector<TokenRange> chunks = {{1, n - 1}, {0, n}};
      const std::vector<TokenRange> candidates = AllCandidates(n, window);
      const std::vector<LateWindow> plan = PlanLateWindows(n, window, chunks);
      for (const LateWindow& w : plan) {
        for (const LateSegment& s : w.segments) {
          for (int64_t t = s.begin; t < s.end; ++t) {
            int64_t best = -1;
            for (const TokenRange& c : candidates) {
              if (c.begin <= t && t < c.end) best = std::max(best, MinContext(c, {t, t + 1}));
            }
            ASSERT_EQ(MinContext(Covered(w, n), {t, t + 1}), best)
                << "n " << n << " window " << window << " token " << t;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace longenc::model
