// The tokenizer interface the server and the offline tools use, whatever the model's kind:
// BERT WordPiece (vocab.txt or tokenizer.json), byte-level BPE and SentencePiece Unigram
// (tokenizer.json). LoadTokenizer picks the implementation from a model directory.
//
// Thread-safety: implementations are immutable after loading; every const method (Encode
// included) may be called concurrently from any number of threads.
#ifndef LONGENC_MODEL_TOKENIZER_TOKENIZER_H_
#define LONGENC_MODEL_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace longenc::tokenizer {

struct Encoding {
  std::vector<int32_t> ids;
  // Per token, the byte range [begin, end) of the input text it came from; (0, 0) for the
  // special tokens the post-processor adds (e.g. [CLS] and [SEP]).
  std::vector<std::pair<int32_t, int32_t>> offsets;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The full encoding of one text, special tokens included, no truncation, as Hugging Face
  // `tokenizers` encodes it with add_special_tokens=True. InvalidArgument for invalid UTF-8,
  // with the byte offset of the first bad byte in the message.
  virtual absl::StatusOr<Encoding> Encode(std::string_view text) const = 0;
  // Ids in [0, vocab_size()), added tokens included.
  virtual int64_t vocab_size() const = 0;
  // The token that opens / closes every encoding ([CLS] / [SEP], <s> / </s>); -1 if the
  // post-processor adds none.
  virtual int32_t cls_id() const = 0;
  virtual int32_t sep_id() const = 0;
  // "WordPiece", "BPE" or "Unigram" (for --help texts and logs).
  virtual std::string_view kind() const = 0;
};

// The tokenizer of a Hugging Face model directory: tokenizer.json when present (WordPiece, BPE
// or Unigram), else vocab.txt with tokenizer_config.json (BERT WordPiece). A file the code
// cannot honour exactly is refused with a message naming the file and the key.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace longenc::tokenizer

#endif  // LONGENC_MODEL_TOKENIZER_TOKENIZER_H_
