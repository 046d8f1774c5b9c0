// libFuzzer target: WordPieceTokenizer::Encode on arbitrary bytes never crashes, and every
// encoding it returns has one in-range byte offset pair per token. Seeds are in corpus/.
// Uses the model directory of LONGENC_MODEL_DIR (default: the exported default model).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "model/tokenizer/wordpiece.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using longenc::tokenizer::WordPieceTokenizer;
  static const WordPieceTokenizer* tokenizer = [] {
    const char* dir = std::getenv("LONGENC_MODEL_DIR");
    auto loaded = WordPieceTokenizer::FromModelDir(dir ? dir : LONGENC_DEFAULT_MODEL_DIR);
    if (!loaded.ok()) std::abort();
    return new WordPieceTokenizer(*std::move(loaded));
  }();
  auto encoding = tokenizer->Encode(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!encoding.ok()) return 0;  // invalid UTF-8 is an error, not a crash
  if (encoding->ids.size() != encoding->offsets.size() || encoding->ids.size() < 2) std::abort();
  for (const auto& [begin, end] : encoding->offsets) {
    if (begin < 0 || begin > end || static_cast<size_t>(end) > size) std::abort();
  }
  for (int32_t id : encoding->ids) {
    if (id < 0 || id >= tokenizer->vocab_size()) std::abort();
  }
  return 0;
}
