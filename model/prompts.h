// sentence-transformers prompts (config_sentence_transformers.json): which prompt a request or a
// command line names, and where the caller's text starts once a prompt is prepended. Shared by
// the server (server/embed_request.cc) and longenc-encode so both treat prompts alike
// (docs/API.md, "Model defaults and prompts"). Torch-free and proto-free.
//
// Thread-safety: pure functions; safe from any thread.
#ifndef LONGENC_MODEL_PROMPTS_H_
#define LONGENC_MODEL_PROMPTS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/backend.h"

namespace longenc::model {

// The text of the prompt named `requested`, or of the model's default prompt when `requested`
// is empty; nullptr when neither names one. An unknown name is INVALID_ARGUMENT that starts
// with `field` and lists the known names.
absl::StatusOr<const std::string*> FindPrompt(const ModelInfo& info, const std::string& requested,
                                              const std::string& field);

// A text tokenized with a prompt of `prompt_bytes` bytes before it: moves `offsets` onto the
// caller's text (the prompt's tokens become (0, 0), like special tokens; a token across the
// boundary starts at 0) and returns how many tokens from `first` on lie within the prompt.
int64_t StripPromptOffsets(int64_t prompt_bytes, int64_t first,
                           std::vector<std::pair<int32_t, int32_t>>& offsets);

}  // namespace longenc::model

#endif  // LONGENC_MODEL_PROMPTS_H_
