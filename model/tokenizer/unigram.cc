#include "model/tokenizer/unigram.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/tokenizer/bert_chars.h"

namespace longenc::tokenizer::internal {
namespace {

// SentencePiece's penalty for an unknown character, below the rarest piece.
constexpr double kUnkPenalty = 10.0;

struct Node {
  double score = 0;
  int64_t start = -1;  // -1: no path ends here yet
  int32_t id = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<UnigramModel>> UnigramModel::Create(
    std::vector<std::pair<std::string, double>> vocab, std::optional<int32_t> unk_id,
    bool byte_fallback) {
  if (vocab.empty()) return absl::InvalidArgumentError("Unigram vocabulary is empty");
  if (vocab.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("Unigram vocabulary is too large");
  }
  if (unk_id.has_value() && (*unk_id < 0 || static_cast<size_t>(*unk_id) >= vocab.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unk_id ", *unk_id, " is outside the vocabulary of ", vocab.size()));
  }
  if (!unk_id.has_value() && !byte_fallback) {
    return absl::InvalidArgumentError("Unigram model without unk_id (and no byte_fallback)");
  }
  std::unique_ptr<UnigramModel> model(new UnigramModel());
  model->vocab_ = std::move(vocab);
  model->unk_ = unk_id;
  model->byte_fallback_ = byte_fallback;
  model->min_score_ = std::numeric_limits<double>::infinity();
  for (size_t id = 0; id < model->vocab_.size(); ++id) {
    const auto& [piece, score] = model->vocab_[id];
    model->min_score_ = std::min(model->min_score_, score);
    // A repeated piece maps to its last id, as HF's token_to_ids does.
    model->ids_.insert_or_assign(piece, static_cast<int32_t>(id));
  }
  for (const auto& [piece, id] : model->ids_) {
    if (!piece.empty()) model->sorted_.push_back(id);
  }
  std::sort(model->sorted_.begin(), model->sorted_.end(), [&](int32_t a, int32_t b) {
    return model->vocab_[a].first < model->vocab_[b].first;
  });
  model->by_first_.assign(256, {0, 0});
  model->by_first_two_.assign(256 * 256, {0, 0});
  for (size_t i = 0; i < model->sorted_.size(); ++i) {
    const std::string& piece = model->vocab_[model->sorted_[i]].first;
    const auto index = static_cast<int32_t>(i);
    const auto extend = [index](std::pair<int32_t, int32_t>& range) {
      if (range.first == range.second) range.first = index;
      range.second = index + 1;
    };
    const auto b0 = static_cast<unsigned char>(piece[0]);
    extend(model->by_first_[b0]);
    if (piece.size() >= 2) {
      extend(model->by_first_two_[b0 * 256 + static_cast<unsigned char>(piece[1])]);
    }
  }
  return model;
}

std::string_view UnigramModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= vocab_.size()) return {};
  return vocab_[id].first;
}

std::optional<int32_t> UnigramModel::TokenToId(std::string_view token) const {
  auto it = ids_.find(absl::string_view(token.data(), token.size()));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void UnigramModel::Tokenize(std::string_view piece, std::vector<PieceToken>* out) const {
  const size_t size = piece.size();
  if (size == 0) return;
  const double unk_score = min_score_ - kUnkPenalty;
  std::vector<Node> best(size + 1);
  best[0].start = 0;
  for (size_t start = 0; start < size;) {
    const double base = best[start].score;
    char32_t cp;
    int char_len = DecodeUtf8(piece, start, &cp);
    if (char_len == 0) char_len = 1;  // never: the text is validated on entry
    bool has_single = false;
    // Every vocabulary piece that is a prefix of piece[start..], shortest first: narrow the
    // sorted range one byte at a time.
    auto lo = sorted_.begin();
    auto hi = sorted_.end();
    for (size_t k = 0; start + k < size && lo != hi; ++k) {
      const unsigned char c = static_cast<unsigned char>(piece[start + k]);
      if (k < 2) {
        const auto& range = k == 0 ? by_first_[c]
                                   : by_first_two_[static_cast<unsigned char>(piece[start]) * 256 + c];
        lo = sorted_.begin() + range.first;
        hi = sorted_.begin() + range.second;
        // The one-byte piece (k == 0) sorts first among those starting with its byte; the
        // two-byte table holds pieces of two bytes or more only.
      } else {
        const auto byte_at = [&](int32_t id) {
          const std::string& s = vocab_[id].first;
          return k < s.size() ? static_cast<int>(static_cast<unsigned char>(s[k])) : -1;
        };
        lo = std::lower_bound(lo, hi, static_cast<int>(c),
                              [&](int32_t id, int v) { return byte_at(id) < v; });
        hi = std::upper_bound(lo, hi, static_cast<int>(c),
                              [&](int v, int32_t id) { return v < byte_at(id); });
      }
      if (lo == hi) break;
      // The exact piece of length k + 1, if any, sorts first in the range.
      if (vocab_[*lo].first.size() != k + 1) continue;
      const int32_t id = *lo;
      const size_t end = start + k + 1;
      const double score = base + vocab_[id].second;
      if (best[end].start < 0 || score > best[end].score) {
        best[end] = {score, static_cast<int64_t>(start), id};
      }
      if (k + 1 == static_cast<size_t>(char_len)) has_single = true;
    }
    if (!has_single) {
      const size_t end = start + static_cast<size_t>(char_len);
      const double score = base + unk_score;
      if (best[end].start < 0 || score > best[end].score) {
        best[end] = {score, static_cast<int64_t>(start), unk_.value_or(-1)};
      }
    }
    start += static_cast<size_t>(char_len);
  }

  // Back from the end; runs of unknown nodes become one token (fuse_unk).
  struct Range {
    size_t begin, end;
    int32_t id;  // -1: a run of unknown characters, looked up by its text as HF does
  };
  std::vector<Range> ranges;
  size_t fused_end = 0;
  bool fusing = false;
  for (size_t end = size; end > 0;) {
    const Node& node = best[end];
    const auto start = static_cast<size_t>(node.start);
    if (unk_.has_value() && node.id == *unk_) {
      if (!fusing) fused_end = end;
      fusing = true;
    } else {
      if (fusing) ranges.push_back({end, fused_end, -1});
      fusing = false;
      ranges.push_back({start, end, node.id});
    }
    end = start;
  }
  if (fusing) ranges.push_back({0, fused_end, -1});
  std::reverse(ranges.begin(), ranges.end());

  for (const auto& [begin, end, node_id] : ranges) {
    if (node_id >= 0) {
      out->push_back({node_id, begin, end});
      continue;
    }
    const std::string_view text = piece.substr(begin, end - begin);
    if (auto id = TokenToId(text)) {
      out->push_back({*id, begin, end});
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (const char c : text) {
        auto id = TokenToId(absl::StrFormat("<0x%02X>", static_cast<unsigned char>(c)));
        if (!id) break;
        bytes.push_back(*id);
      }
      if (bytes.size() == text.size()) {
        for (int32_t id : bytes) out->push_back({id, begin, end});
        continue;
      }
    }
    out->push_back({unk_.value_or(0), begin, end});
  }
}

}  // namespace longenc::tokenizer::internal
