// Unigram scores as Hugging Face `tokenizers` reads them. Its JSON parser (serde_json without
// float_roundtrip) builds a decimal as (u64 significand as f64) * or / 10^exponent, which is off
// by one unit in the last place for some scores; Viterbi ties between equal-scoring
// segmentations then break the other way. To give the same ids, the scores are re-read from
// their JSON text the same way.
//
// Internal to model/tokenizer. Pure functions; thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_SERDE_FLOAT_H_
#define LONGENC_MODEL_TOKENIZER_SERDE_FLOAT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace longenc::tokenizer::internal {

// serde_json's f64 for a JSON number's text; nullopt if it is not a JSON number.
std::optional<double> SerdeJsonF64(std::string_view number);

// The texts of the numbers in model.vocab[*][1] of a tokenizer.json, in order (empty when the
// document does not parse).
std::vector<std::string> UnigramScoreTexts(std::string_view json);

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_SERDE_FLOAT_H_
