// The interface of a tokenizer.json "model": what turns one pre-tokenised piece into ids
// (BPE in bpe.h, Unigram in unigram.h).
//
// Internal to model/tokenizer. Implementations are immutable; Tokenize is thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_SUBWORD_MODEL_H_
#define LONGENC_MODEL_TOKENIZER_SUBWORD_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace longenc::tokenizer::internal {

// One token of a piece: its id and the bytes [begin, end) of the piece it covers.
struct PieceToken {
  int32_t id;
  size_t begin, end;
};

class SubwordModel {
 public:
  virtual ~SubwordModel() = default;
  // Appends the tokens of `piece` (non-empty, valid UTF-8) to `out`.
  virtual void Tokenize(std::string_view piece, std::vector<PieceToken>* out) const = 0;
  // One more than the largest id.
  virtual int64_t vocab_size() const = 0;
  virtual std::string_view IdToToken(int32_t id) const = 0;
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
};

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_SUBWORD_MODEL_H_
