// libFuzzer target: reading a tokenizer.json (ParseTokenizerJson), the start-up path that must
// refuse a malformed or unsupported file with a message naming it instead of crashing, looping
// or starting a tokenizer that emits ids outside its vocabulary. Input = the file's bytes.
// Every tokenizer it accepts must encode a few texts (special tokens, combining marks, CJK,
// emoji, a long word) into in-range ids with one in-range offset pair each.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "model/tokenizer/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto tokenizer = longenc::tokenizer::ParseTokenizerJson(input, "fuzz/tokenizer.json");
  if (!tokenizer.ok()) {
    // A refused start-up must say which file is wrong.
    if (tokenizer.status().message().find("fuzz/tokenizer.json") == std::string::npos) {
      std::abort();
    }
    return 0;
  }
  const auto& t = **tokenizer;
  const int64_t vocab = t.vocab_size();
  if (vocab <= 0 || t.cls_id() >= vocab || t.sep_id() >= vocab) std::abort();
  static const std::string long_word(3000, 'a');
  for (std::string_view text :
       {std::string_view("Hello, World!  naïve e\u0301 \u3000東京 [MASK] <s>x</s> <mask> 🤗"),
        std::string_view("a"), std::string_view(""), std::string_view("   "),
        std::string_view("\u2581 \xC4\xA0 ##"), std::string_view(long_word)}) {
    auto encoding = t.Encode(text);
    if (!encoding.ok() || encoding->ids.size() != encoding->offsets.size()) std::abort();
    for (int32_t id : encoding->ids) {
      if (id < 0 || id >= vocab) std::abort();
    }
    for (const auto& [begin, end] : encoding->offsets) {
      if (begin < 0 || begin > end || static_cast<size_t>(end) > text.size()) std::abort();
    }
  }
  return 0;
}
