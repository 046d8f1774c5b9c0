// Reads a Hugging Face tokenizer.json into a Tokenizer: a BERT WordPiece file (BertNormalizer,
// BertPreTokenizer, WordPiece, [CLS] $A [SEP]) into WordPieceTokenizer; byte-level BPE and
// Unigram files (the normalisers, pre-tokenisers and post-processors of normalizers.h,
// pre_tokenizers.h and PostProcessing) into PipelineTokenizer. Anything else (another type,
// dropout, a pair-only template, ...) is refused with a message naming the key, since a
// tokenizer that differs from the model's own would silently give wrong embeddings.
//
// Thread-safe (no shared state).
#ifndef LONGENC_MODEL_TOKENIZER_TOKENIZER_JSON_H_
#define LONGENC_MODEL_TOKENIZER_TOKENIZER_JSON_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/tokenizer/tokenizer.h"

namespace longenc::tokenizer {

// `json` is the file's contents; `path` prefixes every error message.
absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json,
                                                              const std::string& path);
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path);

}  // namespace longenc::tokenizer

#endif  // LONGENC_MODEL_TOKENIZER_TOKENIZER_JSON_H_
