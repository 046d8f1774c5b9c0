#include "model/positions/positions.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace longenc::positions {
namespace {

struct ModeName {
  Mode mode;
  const char* name;
};
constexpr ModeName kModes[] = {{Mode::kChunk, "chunk"},
                               {Mode::kRecurrent, "recurrent"},
                               {Mode::kGrouped, "grouped"},
                               {Mode::kInterpolate, "interpolate"},
                               {Mode::kNative, "native"}};
constexpr char kLogScale[] = ",logscale";

}  // namespace

std::vector<std::string> PositionSchemeNames() {
  std::vector<std::string> names;
  for (const auto& m : kModes) {
    names.push_back(m.name);
    if (m.mode != Mode::kChunk) names.push_back(absl::StrCat(m.name, kLogScale));
  }
  return names;
}

absl::StatusOr<PositionScheme> ParsePositionScheme(const std::string& text) {
  for (const auto& m : kModes) {
    PositionScheme s{m.mode, false};
    if (text == ToString(s)) return s;
    s.log_scale = true;
    if (m.mode != Mode::kChunk && text == ToString(s)) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown position mode '", text, "'; valid: ",
                                                 absl::StrJoin(PositionSchemeNames(), ", ")));
}

std::string ToString(const PositionScheme& scheme) {
  for (const auto& m : kModes) {
    if (m.mode == scheme.mode) return absl::StrCat(m.name, scheme.log_scale ? kLogScale : "");
  }
  return "?";
}

torch::Tensor PositionEmbeddings(const PositionScheme& scheme, const torch::Tensor& table,
                                 int64_t n) {
  const int64_t p = table.size(0);
  if (n <= p) return table.slice(0, 0, n);
  auto ids_options = torch::TensorOptions().dtype(torch::kLong).device(table.device());
  switch (scheme.mode) {
    case Mode::kRecurrent:
      return table.index_select(0, torch::arange(n, ids_options).remainder(p));
    case Mode::kGrouped: {
      const int64_t stride = (n + p - 1) / p;
      return table.index_select(0, torch::arange(n, ids_options).div(stride, "floor"));
    }
    case Mode::kInterpolate: {
      // Position i maps to x = i (P-1)/(n-1) on the table; blend its two neighbours.
      torch::Tensor x = torch::linspace(0, static_cast<double>(p - 1), n,
                                        torch::TensorOptions().dtype(table.dtype()).device(table.device()));
      torch::Tensor lo = x.floor().to(torch::kLong).clamp_max(p - 1);
      torch::Tensor hi = (lo + 1).clamp_max(p - 1);
      torch::Tensor w = (x - lo.to(x.dtype())).unsqueeze(1);  // [n, 1]
      return table.index_select(0, lo) * (1 - w) + table.index_select(0, hi) * w;
    }
    case Mode::kChunk:
    case Mode::kNative:
      break;
  }
  TORCH_CHECK(false, "chunk and native modes have no position embeddings past the table");
}

double QueryScale(const PositionScheme& scheme, int64_t n, int64_t table_size) {
  if (!scheme.log_scale || n <= table_size) return 1.0;
  return std::log(static_cast<double>(n)) / std::log(static_cast<double>(table_size));
}

}  // namespace longenc::positions
