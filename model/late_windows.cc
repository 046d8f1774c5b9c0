#include "model/late_windows.h"

#include <algorithm>
#include <utility>

namespace longenc::model {
namespace {

// Context a range [s, e) has in window coverage `c`: (fewest on one side, both sides).
std::pair<int64_t, int64_t> Context(TokenRange c, int64_t s, int64_t e) {
  return {std::min(s - c.begin, c.end - e), (s - c.begin) + (c.end - e)};
}

}  // namespace

TokenRange Covered(const LateWindow& w, int64_t num_tokens) {
  return {w.begin == 1 ? 0 : w.begin, w.end == num_tokens - 1 ? num_tokens : w.end};
}

std::vector<LateWindow> PlanLateWindows(int64_t num_tokens, int64_t window,
                                        absl::Span<const TokenRange> chunks) {
  const int64_t last = num_tokens - 1;
  std::vector<LateWindow> windows;
  for (int64_t begin = 1; begin < last; begin += window) {
    windows.push_back({begin, std::min(begin + window, last), true, {}});
  }
  if (chunks.empty()) return windows;
  for (int64_t begin = 1 + window / 2; begin < last; begin += window) {
    const int64_t end = std::min(begin + window, last);
    // Tiling window k holds [1 + k * window, ...): the one this shifted window starts in.
    const LateWindow& tiling = windows[static_cast<size_t>((begin - 1) / window)];
    if (end <= tiling.end) continue;  // inside it: never more context
    windows.push_back({begin, end, false, {}});
  }
  std::stable_sort(windows.begin(), windows.end(),
                   [](const LateWindow& a, const LateWindow& b) { return a.begin < b.begin; });
  std::vector<TokenRange> covered;
  for (const LateWindow& w : windows) covered.push_back(Covered(w, num_tokens));
  // Begins and ends both grow with the index, so the windows covering a token are a run.
  const auto first_covering = [&](int64_t t) {
    return std::partition_point(covered.begin(), covered.end(),
                                [t](const TokenRange& c) { return c.end <= t; }) - covered.begin();
  };
  for (size_t c = 0; c < chunks.size(); ++c) {
    const int64_t s = chunks[c].begin, e = chunks[c].end;
    int64_t best = -1;
    std::pair<int64_t, int64_t> best_context;
    for (int64_t w = first_covering(s); w < static_cast<int64_t>(covered.size()) &&
                                        covered[w].begin <= s; ++w) {
      if (covered[w].end < e) continue;
      const auto context = Context(covered[w], s, e);
      if (best < 0 || context > best_context) best = w, best_context = context;
    }
    if (best >= 0) {
      windows[best].segments.push_back({static_cast<int64_t>(c), s, e});
      continue;
    }
    // Longer than any window holds: each token from where it is most central.
    int64_t run_window = -1, run_begin = s;
    for (int64_t t = s; t <= e; ++t) {
      int64_t pick = -1;
      if (t < e) {
        std::pair<int64_t, int64_t> pick_context;
        for (int64_t w = first_covering(t); w < static_cast<int64_t>(covered.size()) &&
                                            covered[w].begin <= t; ++w) {
          const auto context = Context(covered[w], t, t + 1);
          if (pick < 0 || context > pick_context) pick = w, pick_context = context;
        }
      }
      if (pick != run_window) {
        if (run_window >= 0) {
          windows[run_window].segments.push_back({static_cast<int64_t>(c), run_begin, t});
        }
        run_window = pick;
        run_begin = t;
      }
    }
  }
  windows.erase(std::remove_if(windows.begin(), windows.end(),
                               [](const LateWindow& w) { return !w.tiling && w.segments.empty(); }),
                windows.end());
  return windows;
}

}  // namespace longenc::model
