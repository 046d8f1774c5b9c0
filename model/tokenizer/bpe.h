// Byte-pair encoding as Hugging Face `tokenizers`' BPE model applies it (no dropout): each
// character of the piece starts as a symbol (unknown ones become unk, fused or not, or are
// dropped when there is no unk token; byte_fallback gives <0xXX>), then the adjacent pair of
// lowest merge rank is merged, leftmost first, until none is left. O(n log n) per piece, so a
// 100k-character word is fine.
//
// Internal to model/tokenizer. Immutable after Create; thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_BPE_H_
#define LONGENC_MODEL_TOKENIZER_BPE_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/subword_model.h"

namespace longenc::tokenizer::internal {

struct BpeSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel : public SubwordModel {
 public:
  // InvalidArgument when a merge names a token (or makes one) that is not in the vocabulary,
  // or the unk token is not in it.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const BpeSpec& spec);

  void Tokenize(std::string_view piece, std::vector<PieceToken>* out) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  std::string_view IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;

 private:
  BpeModel() = default;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  // (left id, right id) -> (rank, merged id)
  absl::flat_hash_map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> unk_;
  std::string prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_BPE_H_
