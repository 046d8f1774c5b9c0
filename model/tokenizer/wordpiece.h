// BERT WordPiece tokenizer, torch-free, token-for-token equal to Hugging Face's BertTokenizer
// (the `tokenizers` BertNormalizer + BertPreTokenizer + WordPiece + [CLS]/[SEP] template).
//
// The server tokenizes every request with it (documents of 100k tokens included) and the
// offline encoder uses it for {"text": ...} lines. Encoding is one pass over the input with a
// hash lookup per candidate piece; no per-character heap allocations on ASCII text.
//
// Ownership: a WordPieceTokenizer holds its vocabulary through a shared_ptr to immutable data,
// so copies are cheap and share it. Thread-safety: all const methods (Encode included) may be
// called concurrently from any number of threads.
#ifndef LONGENC_MODEL_TOKENIZER_WORDPIECE_H_
#define LONGENC_MODEL_TOKENIZER_WORDPIECE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/tokenizer.h"

namespace longenc::tokenizer {

// The normalisation switches of a BERT tokenizer (tokenizer_config.json names them the same).
struct TokenizerOptions {
  bool do_lower_case = true;
  // Unset: strip accents exactly when lower-casing (the original BERT rule).
  std::optional<bool> strip_accents;
  // Put spaces around CJK ideographs so that each becomes its own word.
  bool tokenize_chinese_chars = true;
};

// A BERT tokenizer as a tokenizer.json describes it (tokenizer_json.cc reads it).
struct WordPieceSpec {
  std::vector<std::string> tokens;  // id -> token, added tokens included
  TokenizerOptions options;
  std::string cls, sep, unk;
  std::string pad;  // may be empty: then the [UNK] id stands in
  // Added tokens matched verbatim in the raw text (special, normalized=false).
  std::vector<std::string> specials;
};

class WordPieceTokenizer : public Tokenizer {
 public:
  // HF's limit: a word longer than this many (normalised) code points becomes one [UNK].
  static constexpr int kMaxInputCharsPerWord = 100;

  // Reads vocab.txt and, when present, tokenizer_config.json (do_lower_case, strip_accents,
  // tokenize_chinese_chars, the special token names) from a Hugging Face model directory.
  static absl::StatusOr<WordPieceTokenizer> FromModelDir(const std::string& dir);
  // Reads a vocab.txt (one token per line, id = line index) with the standard BERT special
  // token names [CLS], [SEP], [PAD], [UNK] and, if present, [MASK].
  static absl::StatusOr<WordPieceTokenizer> FromVocabFile(const std::string& vocab_path,
                                                          const TokenizerOptions& options);
  // From a parsed tokenizer.json; `source` (its path) prefixes every error message.
  static absl::StatusOr<WordPieceTokenizer> FromSpec(const WordPieceSpec& spec,
                                                     const std::string& source);

  // Full BERT encoding of one text: [CLS] tokens [SEP], no truncation. Special token strings
  // in the text (e.g. "[MASK]") become their ids, as in HF. InvalidArgument for invalid
  // UTF-8, with the byte offset of the first bad byte in the message.
  absl::StatusOr<Encoding> Encode(std::string_view text) const override;

  int32_t cls_id() const override;
  int32_t sep_id() const override;
  int32_t pad_id() const;
  int32_t unk_id() const;
  int64_t vocab_size() const override;
  std::string_view kind() const override { return "WordPiece"; }
  const TokenizerOptions& options() const;
  // The vocabulary entry of `id`; empty for an id outside [0, vocab_size()).
  std::string_view IdToToken(int32_t id) const;
  // The id of an exact vocabulary entry (e.g. "##ing"), if any.
  std::optional<int32_t> TokenToId(std::string_view token) const;

  struct Data;  // the immutable vocabulary and settings; defined in wordpiece.cc

 private:
  explicit WordPieceTokenizer(std::shared_ptr<const Data> data) : data_(std::move(data)) {}

  std::shared_ptr<const Data> data_;
};

}  // namespace longenc::tokenizer

#endif  // LONGENC_MODEL_TOKENIZER_WORDPIECE_H_
