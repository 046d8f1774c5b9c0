// A tokenizer.json tokenizer in Hugging Face's pipeline shape: added tokens split off the raw
// text, normaliser, added tokens split off the normalised text, pre-tokeniser, model (BPE or
// Unigram), post-processor (offset trimming, then the template's special tokens). Offsets are
// carried through every step as HF carries them. (BERT WordPiece files load into
// WordPieceTokenizer instead, see tokenizer_json.h.)
//
// Memory: every byte of text in flight carries its input span (9 bytes per byte); pieces are
// normalised, split and tokenised one at a time and dropped, so an 8 MB document peaks at about
// 25 bytes per input byte.
//
// Immutable after construction; Encode is thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_PIPELINE_TOKENIZER_H_
#define LONGENC_MODEL_TOKENIZER_PIPELINE_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/normalizers.h"
#include "model/tokenizer/pre_tokenizers.h"
#include "model/tokenizer/subword_model.h"
#include "model/tokenizer/tokenizer.h"

namespace longenc::tokenizer {

// An entry of tokenizer.json "added_tokens".
struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false;
  bool normalized = false, special = false;
};

// What the post-processor does to one sequence.
struct PostProcessing {
  std::vector<int32_t> prefix, suffix;  // the template's special tokens around $A
  // ByteLevel / RobertaProcessing trim_offsets: offsets lose their leading and trailing
  // spaces (except one leading space the pre-tokeniser added, with add_prefix_space).
  bool trim_offsets = false;
  bool trim_add_prefix_space = false;
};

struct PipelineParts {
  std::string kind;  // "BPE" or "Unigram"
  std::vector<AddedToken> added_tokens;
  std::unique_ptr<internal::Normalizer> normalizer;      // may be null
  std::unique_ptr<internal::PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<internal::SubwordModel> model;
  PostProcessing post;
};

class PipelineTokenizer : public Tokenizer {
 public:
  explicit PipelineTokenizer(PipelineParts parts);

  absl::StatusOr<Encoding> Encode(std::string_view text) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  int32_t cls_id() const override;
  int32_t sep_id() const override;
  std::string_view kind() const override { return parts_.kind; }

 private:
  struct Pattern {
    std::string text;  // the content, normalised for normalized=true tokens
    const AddedToken* token;
  };
  struct Piece;  // a split of the text: added token or text still to tokenise

  // Consumes `s` (a huge text is not kept twice).
  void SplitAdded(internal::NormalizedString s, const std::vector<Pattern>& patterns,
                  std::vector<Piece>* out) const;

  PipelineParts parts_;
  std::vector<Pattern> raw_patterns_, normalized_patterns_;  // longest first
  int64_t vocab_size_ = 0;
};

}  // namespace longenc::tokenizer

#endif  // LONGENC_MODEL_TOKENIZER_PIPELINE_TOKENIZER_H_
