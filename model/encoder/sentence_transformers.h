// What a sentence-transformers model directory says about turning hidden states into an
// embedding: modules.json (which modules run), 1_Pooling/config.json (mean, CLS or last token),
// a Normalize module, sentence_bert_config.json (max_seq_length) and
// config_sentence_transformers.json (prompts). A directory without modules.json gets today's
// default: mean over every token, L2-normalised.
//
// Torch-free; the result is a plain value. Thread-safe (no shared state).
#ifndef LONGENC_MODEL_ENCODER_SENTENCE_TRANSFORMERS_H_
#define LONGENC_MODEL_ENCODER_SENTENCE_TRANSFORMERS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace longenc::encoder {

enum class PoolingMode { kMean, kCls, kLastToken };

struct SentenceTransformerInfo {
  bool present = false;  // modules.json was found
  PoolingMode pooling = PoolingMode::kMean;
  bool normalize = true;
  int64_t max_seq_length = 0;  // 0 = not set
  std::vector<std::pair<std::string, std::string>> prompts;  // name -> text, file order
  std::string default_prompt_name;
};

// Reads the files above from `dir`. Files that are absent keep the defaults; files that are
// present but malformed, or ask for something longenc cannot do (max pooling, a Dense module),
// are InvalidArgument naming the file and the key.
absl::StatusOr<SentenceTransformerInfo> LoadSentenceTransformerInfo(const std::string& dir);

// The same from file contents (an empty string = the file is absent), for tests and fuzzing;
// `pooling` is the config.json of the pooling module that modules.json names.
absl::StatusOr<SentenceTransformerInfo> ParseSentenceTransformerFiles(
    const std::string& dir, const std::string& modules, const std::string& pooling,
    const std::string& bert_config, const std::string& st_config);
// The pooling module's directory that modules.json names ("" if none), so the caller can read
// its config.json before ParseSentenceTransformerFiles.
absl::StatusOr<std::string> PoolingModulePath(const std::string& dir, const std::string& modules);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_SENTENCE_TRANSFORMERS_H_
