// xlm_roberta (bge-m3, multilingual-e5) and roberta: BERT whose learned position table starts
// at row pad_token_id + 1 (positions count from pad + 1; the rows before are never read).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/families/family.h"

namespace longenc::encoder {

absl::Status ParseBertLayout(const ConfigReader& reader, EncoderConfig* c);  // families/bert.cc

namespace {

absl::Status ParseXlmRoberta(const ConfigReader& reader, EncoderConfig* c) {
  c->pad_token_id = 1;  // RoBERTa's default
  RETURN_IF_ERROR(ParseBertLayout(reader, c));
  c->position_offset = c->pad_token_id + 1;
  if (c->max_position_embeddings <= c->position_offset) {
    return reader.Invalid(absl::StrCat("max_position_embeddings ", c->max_position_embeddings,
                                       " leaves no position after the offset pad_token_id + 1 = ",
                                       c->position_offset));
  }
  return absl::OkStatus();
}

}  // namespace

const Family& XlmRobertaFamily() {
  static const auto* family =
      new Family{"xlm_roberta", {"xlm-roberta", "xlm_roberta", "roberta"}, &ParseXlmRoberta,
                 {"roberta.", "xlm-roberta.", "xlm_roberta."}, nullptr};
  return *family;
}

}  // namespace longenc::encoder
