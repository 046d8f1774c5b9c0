// bert: learned absolute positions, post-norm blocks, GELU MLP (bert.h's modules).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/families/family.h"

namespace longenc::encoder {

// Also the body of xlm_roberta, which differs only in where position 0 sits.
absl::Status ParseBertLayout(const ConfigReader& reader, EncoderConfig* c) {
  RETURN_IF_ERROR(reader.RequireAbsentOr("position_embedding_type", "absolute",
                                         "only \"absolute\" positions are supported"));
  RETURN_IF_ERROR(ReadSizes(reader, SizeAliases{}, c));
  RETURN_IF_ERROR(reader.Int({"max_position_embeddings"}, true, 1, &c->max_position_embeddings));
  if (c->type_vocab_size < 1) {
    return reader.Invalid("'type_vocab_size' is 0; it must be at least 1");
  }
  RETURN_IF_ERROR(reader.String({"hidden_act"}, &c->hidden_act));
  if (c->hidden_act != "gelu" && c->hidden_act != "gelu_new" &&
      c->hidden_act != "gelu_pytorch_tanh" && c->hidden_act != "relu") {
    return reader.Invalid(absl::StrCat("hidden_act '", c->hidden_act,
                                       "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status ParseBert(const ConfigReader& reader, EncoderConfig* c) {
  return ParseBertLayout(reader, c);
}

}  // namespace

const Family& BertFamily() {
  static const auto* family = new Family{"bert", {"bert"}, &ParseBert, {"bert."}, nullptr};
  return *family;
}

}  // namespace longenc::encoder
