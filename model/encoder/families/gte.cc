// gte (gte-base/large-en-v1.5, model_type "new" on the hub; "gte" in transformers 5): post-norm
// blocks, RoPE, GeGLU MLP whose up_gate_proj holds up first, then gate.
//
// Hub dialect: rope_theta plus rope_scaling {"type": "ntk", "factor": f}, a static NTK that
// transformers 5 rewrites as linear scaling with factor f^(2/d) over theta·f; that rewrite is
// what happens here too. transformers 5 dialect: rope_parameters.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/families/family.h"
#include "model/encoder/families/rotary_rules.h"

namespace longenc::encoder {
namespace {

absl::Status ReadHubRopeScaling(const ConfigReader& reader, EncoderConfig* c) {
  const nlohmann::json& scaling = reader.json()["rope_scaling"];
  if (!scaling.is_object()) return reader.Invalid("'rope_scaling' is not an object");
  ConfigReader sub(scaling, absl::StrCat(reader.source(), ": rope_scaling"));
  std::string type;
  RETURN_IF_ERROR(sub.String({"type", "rope_type"}, &type));
  if (type != "ntk") return sub.Refuse("type", type, "the hub dialect's only scaling is \"ntk\"");
  RETURN_IF_ERROR(sub.RequireAbsentOr("mixed_b", nullptr, "mixed NTK scaling is not implemented"));
  double factor = 1.0;
  RETURN_IF_ERROR(sub.Double({"factor"}, true, &factor));
  if (factor < 1.0) return sub.Refuse("factor", factor, "it must be at least 1");
  c->rope.type = RopeType::kLinear;
  c->rope.theta *= factor;
  c->rope.factor = std::pow(factor, 2.0 / static_cast<double>(c->head_dim()));
  return absl::OkStatus();
}

absl::Status ParseGte(const ConfigReader& reader, EncoderConfig* c) {
  RETURN_IF_ERROR(reader.RequireAbsentOr("position_embedding_type", "rope", "gte uses RoPE only"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("layer_norm_type", "layer_norm", "only LayerNorm is implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("pack_qkv", true, "only the packed qkv_proj is implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("logn_attention_scale", false,
                                         "use --position_mode=native,logscale instead"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("logn_attention_clip1", false,
                                         "use --position_mode=native,logscale instead"));
  c->pad_token_id = 1;  // transformers' GteConfig default
  c->type_vocab_size = 1;
  RETURN_IF_ERROR(ReadSizes(reader, SizeAliases{}, c));
  c->max_position_embeddings = 8192;
  RETURN_IF_ERROR(reader.Int({"max_position_embeddings"}, false, 1, &c->max_position_embeddings));
  RETURN_IF_ERROR(reader.String({"hidden_act"}, &c->hidden_act));
  RETURN_IF_ERROR(CheckActivation(reader, "hidden_act", c->hidden_act));
  c->gated_mlp = true;
  c->mlp_in_bias = false;
  c->positions = PositionKind::kRotary;
  c->rope.theta = 160000.0;
  if (reader.Has("rope_parameters")) {
    if (reader.Has("rope_scaling")) {
      return reader.Invalid("both 'rope_parameters' and 'rope_scaling' are set; keep one");
    }
    return ReadRopeParameters(reader, reader.json()["rope_parameters"], "rope_parameters",
                              c->max_position_embeddings, &c->rope);
  }
  RETURN_IF_ERROR(reader.Double({"rope_theta"}, false, &c->rope.theta));
  if (c->rope.theta <= 1.0) return reader.Invalid("'rope_theta' must be greater than 1");
  if (reader.Has("rope_scaling")) return ReadHubRopeScaling(reader, c);
  return absl::OkStatus();
}

std::vector<WeightRule> GteRules(const EncoderConfig& c) {
  std::vector<WeightRule> rules = {
      {"embeddings.word_embeddings.weight", "embeddings.word.weight"},
      {"embeddings.token_type_embeddings.weight", "embeddings.token_type.weight"},
      // Hub names.
      {"encoder.layer.*.attention.qkv_proj.weight", "layers.*.qkv.weight"},
      {"encoder.layer.*.attention.qkv_proj.bias", "layers.*.qkv.bias"},
      {"encoder.layer.*.attention.o_proj.weight", "layers.*.out.weight"},
      {"encoder.layer.*.attention.o_proj.bias", "layers.*.out.bias"},
      {"encoder.layer.*.mlp.up_gate_proj.weight", "layers.*.mlp_in.weight", 2, {1, 0}},
      {"encoder.layer.*.mlp.down_proj.weight", "layers.*.mlp_out.weight"},
      {"encoder.layer.*.mlp.down_proj.bias", "layers.*.mlp_out.bias"},
      {"encoder.layer.*.attn_ln.weight", "layers.*.attn_norm.weight"},
      {"encoder.layer.*.attn_ln.bias", "layers.*.attn_norm.bias"},
      {"encoder.layer.*.mlp_ln.weight", "layers.*.mlp_norm.weight"},
      {"encoder.layer.*.mlp_ln.bias", "layers.*.mlp_norm.bias"},
  };
  AddTransformersRotaryRules(&rules);
  return rules;
}

}  // namespace

const Family& GteFamily() {
  static const auto* family =
      new Family{"gte", {"gte", "new"}, &ParseGte, {"new.", "gte."}, &GteRules};
  return *family;
}

}  // namespace longenc::encoder
