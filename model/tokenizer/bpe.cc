#include "model/tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "model/tokenizer/bert_chars.h"

namespace longenc::tokenizer::internal {
namespace {

struct Symbol {
  int32_t id;
  int32_t prev, next;  // neighbours in the word; -1 at the ends
  size_t len;          // bytes of the piece; 0 once merged into its left neighbour
};

struct Merge {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  // std::priority_queue is a max-heap: the lowest rank, then the leftmost, comes out first.
  bool operator<(const Merge& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const BpeSpec& spec) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  int32_t max_id = -1;
  for (const auto& [token, id] : spec.vocab) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("negative id for \"", token, "\""));
    model->vocab_.insert_or_assign(token, id);
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : spec.vocab) model->id_to_token_[id] = token;
  model->prefix_ = spec.continuing_subword_prefix;
  model->suffix_ = spec.end_of_word_suffix;
  model->fuse_unk_ = spec.fuse_unk;
  model->byte_fallback_ = spec.byte_fallback;
  model->ignore_merges_ = spec.ignore_merges;
  if (spec.unk_token.has_value()) {
    auto it = model->vocab_.find(*spec.unk_token);
    if (it == model->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unk_token \"", *spec.unk_token, "\" is not in the vocabulary"));
    }
    model->unk_ = it->second;
  }
  const auto id_of = [&](const std::string& token) -> absl::StatusOr<int32_t> {
    auto it = model->vocab_.find(token);
    if (it == model->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merges: token \"", token, "\" is not in the vocabulary"));
    }
    return it->second;
  };
  model->merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    if (b.size() < model->prefix_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merges: \"", b, "\" is shorter than the continuing_subword_prefix"));
    }
    ASSIGN_OR_RETURN(const int32_t a_id, id_of(a));
    ASSIGN_OR_RETURN(const int32_t b_id, id_of(b));
    ASSIGN_OR_RETURN(const int32_t new_id, id_of(a + b.substr(model->prefix_.size())));
    // A repeated pair keeps its last rank, as HF's map collection does.
    model->merges_.insert_or_assign(std::make_pair(a_id, b_id),
                                    std::make_pair(static_cast<int32_t>(rank), new_id));
  }
  return model;
}

std::string_view BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return {};
  return id_to_token_[id];
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(absl::string_view(token.data(), token.size()));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::Tokenize(std::string_view piece, std::vector<PieceToken>* out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    if (auto id = TokenToId(piece)) {
      out->push_back({*id, 0, piece.size()});
      return;
    }
  }
  // The initial symbols: one per character (HF merge_word).
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  const auto add = [&](int32_t id, size_t len) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, len});
    if (index > 0) symbols[index - 1].next = index;
  };
  // The pending unknown symbol (HF merges it with the next unknown when fuse_unk).
  bool has_unk = false;
  int32_t unk_id = 0;
  size_t unk_len = 0;
  std::string key;
  char32_t cp;
  for (size_t pos = 0; pos < piece.size();) {
    int len = DecodeUtf8(piece, pos, &cp);
    if (len == 0) len = 1;  // never: the text is validated on entry
    const bool first = pos == 0;
    const bool last = pos + len >= piece.size();
    key.clear();
    if (!first) key += prefix_;
    key.append(piece.substr(pos, len));
    if (last) key += suffix_;
    pos += len;
    if (auto it = vocab_.find(key); it != vocab_.end()) {
      if (has_unk) add(unk_id, unk_len);
      has_unk = false;
      add(it->second, static_cast<size_t>(len));
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (const char c : key) {
        auto it = vocab_.find(absl::StrFormat("<0x%02X>", static_cast<unsigned char>(c)));
        if (it == vocab_.end()) break;
        bytes.push_back(it->second);
      }
      if (bytes.size() == key.size()) {
        for (int32_t id : bytes) add(id, 1);
        continue;
      }
    }
    if (unk_) {
      if (has_unk && fuse_unk_) {
        unk_len += static_cast<size_t>(len);
      } else {
        if (has_unk) add(unk_id, unk_len);
        has_unk = true;
        unk_id = *unk_;
        unk_len = static_cast<size_t>(len);
      }
    }
  }
  if (has_unk) add(unk_id, unk_len);

  // HF Word::merge_all: a heap of candidate merges, lowest rank then leftmost first; stale
  // entries (a side already merged elsewhere) are skipped when popped.
  std::priority_queue<Merge> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    auto it = merges_.find(std::make_pair(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) {
      queue.push({it->second.first, static_cast<int32_t>(i), it->second.second});
    }
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next == -1) continue;
    const int32_t right_pos = left.next;
    const Symbol right = symbols[right_pos];
    auto it = merges_.find(std::make_pair(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      auto p = merges_.find(std::make_pair(symbols[left.prev].id, left.id));
      if (p != merges_.end()) queue.push({p->second.first, left.prev, p->second.second});
    }
    if (left.next >= 0) {
      auto n = merges_.find(std::make_pair(left.id, symbols[left.next].id));
      if (n != merges_.end()) queue.push({n->second.first, top.pos, n->second.second});
    }
  }
  size_t offset = 0;
  for (const Symbol& s : symbols) {
    if (s.len == 0) continue;
    out->push_back({s.id, offset, offset + s.len});
    offset += s.len;
  }
}

}  // namespace longenc::tokenizer::internal
