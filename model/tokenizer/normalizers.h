// The tokenizer.json normalisers longenc supports, each as Hugging Face `tokenizers` applies
// it, alignments included: NFC/NFD/NFKC/NFKD, Lowercase, Replace, SentencePiece's Precompiled
// and Sequence. (BertNormalizer lives in the WordPiece tokenizer.)
//
// Internal to model/tokenizer. Immutable after construction; Normalize is thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_NORMALIZERS_H_
#define LONGENC_MODEL_TOKENIZER_NORMALIZERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/normalized_string.h"
#include "model/tokenizer/precompiled_charsmap.h"

namespace longenc::tokenizer::internal {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(NormalizedString* s) const = 0;
};

enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };
std::unique_ptr<Normalizer> MakeUnicodeNormalizer(UnicodeForm form);
std::unique_ptr<Normalizer> MakeLowercase();
std::unique_ptr<Normalizer> MakePrecompiled(PrecompiledCharsmap charsmap);
// Replace every match of `pattern` (a literal string, or a regular expression when `regex`)
// by `content`. InvalidArgument for a pattern ICU cannot compile.
absl::StatusOr<std::unique_ptr<Normalizer>> MakeReplace(const std::string& pattern, bool regex,
                                                        const std::string& content);
std::unique_ptr<Normalizer> MakeSequence(std::vector<std::unique_ptr<Normalizer>> parts);

// HF's `replace` helper of the Precompiled normaliser: the changes that turn a run of
// `old_count` characters into `replacement` (exposed for the Unicode forms, which use it per
// segment).
void AppendReplacement(size_t old_count, const std::u32string& replacement,
                       std::vector<CharChange>* out);

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_NORMALIZERS_H_
