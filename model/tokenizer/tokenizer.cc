#include "model/tokenizer/tokenizer.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/tokenizer_json.h"
#include "model/tokenizer/wordpiece.h"

namespace longenc::tokenizer {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  const std::string json_path = absl::StrCat(model_dir, "/tokenizer.json");
  if (std::ifstream(json_path)) return LoadTokenizerJson(json_path);
  absl::StatusOr<WordPieceTokenizer> wordpiece = WordPieceTokenizer::FromModelDir(model_dir);
  if (!wordpiece.ok()) return wordpiece.status();
  return std::unique_ptr<Tokenizer>(std::make_unique<WordPieceTokenizer>(*std::move(wordpiece)));
}

}  // namespace longenc::tokenizer
