// Writes a tiny seeded BERT directory (config.json, model.safetensors, vocab.txt) for fast
// unit tests of the loading and encoding path; the pretrained model serves the parity tests.
#ifndef LONGENC_TESTS_UNIT_MODEL_TINY_MODEL_H_
#define LONGENC_TESTS_UNIT_MODEL_TINY_MODEL_H_

#include <string>

#include "model/encoder/config.h"

namespace longenc::testing {

// 2 layers, hidden 32, 4 heads, 64-token vocabulary, 16 positions.
encoder::EncoderConfig TinyConfig();
std::string TinyConfigJson(const encoder::EncoderConfig& config);
// Creates `dir` with the three files; weights drawn from a generator seeded with `seed`.
void WriteTinyModel(const std::string& dir, const encoder::EncoderConfig& config, uint64_t seed = 7);

}  // namespace longenc::testing

#endif  // LONGENC_TESTS_UNIT_MODEL_TINY_MODEL_H_
