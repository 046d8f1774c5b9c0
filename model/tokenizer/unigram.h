// The Unigram language model as Hugging Face `tokenizers` applies it (SentencePiece models
// converted by transformers, e.g. XLM-R / bge-m3): Viterbi over every vocabulary piece that
// starts at each character, an unknown character scoring min_score - 10, consecutive unknowns
// fused into one <unk>; byte_fallback gives <0xXX> pieces instead.
//
// Pieces are found by binary search over the sorted vocabulary, one byte at a time, the first
// two bytes through lookup tables (no trie to build; 250k pieces cost one sorted index).
//
// Internal to model/tokenizer. Immutable after Create; thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_UNIGRAM_H_
#define LONGENC_MODEL_TOKENIZER_UNIGRAM_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/subword_model.h"

namespace longenc::tokenizer::internal {

class UnigramModel : public SubwordModel {
 public:
  // `vocab`: (piece, log probability) by id. InvalidArgument for an out-of-range unk_id, a
  // model without one when byte_fallback is off, or an empty vocabulary.
  static absl::StatusOr<std::unique_ptr<UnigramModel>> Create(
      std::vector<std::pair<std::string, double>> vocab, std::optional<int32_t> unk_id,
      bool byte_fallback);

  void Tokenize(std::string_view piece, std::vector<PieceToken>* out) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string_view IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;

 private:
  UnigramModel() = default;

  std::vector<std::pair<std::string, double>> vocab_;
  std::vector<int32_t> sorted_;  // ids of the non-empty pieces, by piece bytes
  // [begin, end) in sorted_ of the pieces that start with each byte, and of the pieces of two
  // bytes or more that start with each pair of bytes (index b0 * 256 + b1): the first two
  // narrowing steps, which would otherwise search the whole vocabulary.
  std::vector<std::pair<int32_t, int32_t>> by_first_, by_first_two_;
  absl::flat_hash_map<std::string, int32_t> ids_;
  std::optional<int32_t> unk_;
  bool byte_fallback_ = false;
  double min_score_ = 0;
};

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_UNIGRAM_H_
