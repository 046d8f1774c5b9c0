// libFuzzer target: loading a tokenizer from a model directory with arbitrary files
// (WordPieceTokenizer::FromModelDir), the start-up path that must refuse a bad vocabulary or
// tokenizer_config.json with a message naming the file instead of crashing or starting with
// special tokens that are not there. Input = tokenizer_config.json bytes, a NUL byte, vocab.txt
// bytes (no NUL: vocab.txt only, no config). Every tokenizer it accepts must encode text into
// in-range ids framed by its [CLS] and [SEP].
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include "model/tokenizer/wordpiece.h"

namespace {

const std::string& ModelDir() {
  static const std::string* dir = [] {
    std::string pattern = "/tmp/longenc_tokenizer_files_fuzz.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    // Leave nothing behind in /tmp when the fuzzer or the replay test exits normally.
    std::atexit([] {
      for (const char* file : {"/tokenizer_config.json", "/vocab.txt"}) {
        unlink((ModelDir() + file).c_str());
      }
      rmdir(ModelDir().c_str());
    });
    return new std::string(pattern);
  }();
  return *dir;
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using longenc::tokenizer::WordPieceTokenizer;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string config_path = ModelDir() + "/tokenizer_config.json";
  const size_t nul = input.find('\0');
  if (nul == std::string_view::npos) {
    unlink(config_path.c_str());
    WriteFile(ModelDir() + "/vocab.txt", input);
  } else {
    WriteFile(config_path, input.substr(0, nul));
    WriteFile(ModelDir() + "/vocab.txt", input.substr(nul + 1));
  }
  auto tokenizer = WordPieceTokenizer::FromModelDir(ModelDir());
  if (!tokenizer.ok()) {
    // A refused start-up must say which file is wrong.
    if (tokenizer.status().message().find(ModelDir()) == std::string::npos) std::abort();
    return 0;
  }
  const int64_t vocab = tokenizer->vocab_size();
  for (int32_t id : {tokenizer->cls_id(), tokenizer->sep_id(), tokenizer->pad_id(),
                     tokenizer->unk_id()}) {
    if (id < 0 || id >= vocab) std::abort();
  }
  for (std::string_view text : {"Hello, World! naïve 東京 [MASK] [CLS]x", "a", "##", ""}) {
    auto encoding = tokenizer->Encode(text);
    if (!encoding.ok() || encoding->ids.size() < 2 ||
        encoding->ids.size() != encoding->offsets.size()) {
      std::abort();
    }
    if (encoding->ids.front() != tokenizer->cls_id() ||
        encoding->ids.back() != tokenizer->sep_id()) {
      std::abort();
    }
    for (int32_t id : encoding->ids) {
      if (id < 0 || id >= vocab) std::abort();
    }
  }
  return 0;
}
