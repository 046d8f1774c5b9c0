// modernbert (ModernBERT, modernbert-embed, gte-modernbert): pre-norm blocks without biases
// (layer 0 has no attention norm), fused Wqkv, GeGLU MLP (Wi's first half is activated), RoPE
// with a global and a local theta, local layers attending |i - j| <= local_attention / 2, and
// final_norm. Global layers: every global_attn_every_n_layers-th from 0 (original dialect) or
// layer_types (transformers 5). Weight names are the same in both; "model." prefixes the
// masked-LM export.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/families/family.h"

namespace longenc::encoder {
namespace {

absl::Status ReadLayerTypes(const ConfigReader& reader, EncoderConfig* c) {
  c->local_layers.assign(c->num_hidden_layers, false);
  if (reader.Has("layer_types")) {
    const nlohmann::json& types = reader.json()["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != c->num_hidden_layers) {
      return reader.Invalid(absl::StrCat("'layer_types' must list one type for each of the ",
                                         c->num_hidden_layers, " layers"));
    }
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] == "sliding_attention") {
        c->local_layers[i] = true;
      } else if (types[i] != "full_attention") {
        return reader.Refuse(absl::StrCat("layer_types[", i, "]"), types[i],
                             "supported: full_attention, sliding_attention");
      }
    }
    return absl::OkStatus();
  }
  int64_t every = 3;
  RETURN_IF_ERROR(reader.Int({"global_attn_every_n_layers"}, false, 1, &every));
  for (int64_t i = 0; i < c->num_hidden_layers; ++i) c->local_layers[i] = i % every != 0;
  return absl::OkStatus();
}

absl::Status ReadRope(const ConfigReader& reader, EncoderConfig* c) {
  c->rope.theta = 160000.0;
  c->local_rope.theta = 10000.0;
  if (reader.Has("rope_parameters")) {
    const nlohmann::json& params = reader.json()["rope_parameters"];
    if (!params.is_object()) return reader.Invalid("'rope_parameters' is not an object");
    for (auto it = params.begin(); it != params.end(); ++it) {
      if (it.key() != "full_attention" && it.key() != "sliding_attention") {
        return reader.Refuse(absl::StrCat("rope_parameters.", it.key()), it.value(),
                             "expected full_attention and sliding_attention entries");
      }
      RopeConfig* rope = it.key() == "full_attention" ? &c->rope : &c->local_rope;
      RETURN_IF_ERROR(ReadRopeParameters(reader, it.value(), absl::StrCat("rope_parameters.", it.key()),
                                         c->max_position_embeddings, rope));
    }
  }
  double global = c->rope.theta, local = c->local_rope.theta;
  RETURN_IF_ERROR(reader.Double({"global_rope_theta"}, false, &global));
  RETURN_IF_ERROR(reader.Double({"local_rope_theta"}, false, &local));
  if (reader.Has("rope_parameters") && (global != c->rope.theta || local != c->local_rope.theta)) {
    return reader.Invalid("'global_rope_theta'/'local_rope_theta' disagree with 'rope_parameters'");
  }
  if (global <= 1.0 || local <= 1.0) return reader.Invalid("rope thetas must be greater than 1");
  c->rope.theta = global;
  c->local_rope.theta = local;
  return absl::OkStatus();
}

absl::Status ParseModernBert(const ConfigReader& reader, EncoderConfig* c) {
  RETURN_IF_ERROR(reader.RequireAbsentOr("rope_scaling", nullptr, "use rope_parameters"));
  c->pad_token_id = 50283;
  c->type_vocab_size = 0;
  c->layer_norm_eps = 1e-5;
  RETURN_IF_ERROR(ReadSizes(reader, {"hidden_size", "num_hidden_layers", "num_attention_heads",
                                     "intermediate_size", "norm_eps"}, c));
  c->type_vocab_size = 0;  // ModernBERT has no token types, whatever the config says
  c->max_position_embeddings = 8192;
  RETURN_IF_ERROR(reader.Int({"max_position_embeddings"}, false, 1, &c->max_position_embeddings));
  c->hidden_act = "gelu";
  RETURN_IF_ERROR(reader.String({"hidden_activation"}, &c->hidden_act));
  RETURN_IF_ERROR(CheckActivation(reader, "hidden_activation", c->hidden_act));
  c->pre_norm = true;
  c->final_norm = true;
  c->gated_mlp = true;
  bool norm_bias = false, attention_bias = false, mlp_bias = false;
  RETURN_IF_ERROR(reader.Bool({"norm_bias"}, &norm_bias));
  RETURN_IF_ERROR(reader.Bool({"attention_bias"}, &attention_bias));
  RETURN_IF_ERROR(reader.Bool({"mlp_bias"}, &mlp_bias));
  c->norm_bias = norm_bias;
  c->attention_bias = attention_bias;
  c->mlp_in_bias = c->mlp_out_bias = mlp_bias;
  c->positions = PositionKind::kRotary;
  RETURN_IF_ERROR(ReadRope(reader, c));
  int64_t local_attention = 128;
  RETURN_IF_ERROR(reader.Int({"local_attention"}, false, 2, &local_attention));
  c->local_window = local_attention / 2;
  return ReadLayerTypes(reader, c);
}

std::vector<WeightRule> ModernBertRules(const EncoderConfig& c) {
  std::vector<WeightRule> rules = {{"embeddings.tok_embeddings.weight", "embeddings.word.weight"}};
  for (const std::string kind : {"weight", "bias"}) {
    rules.push_back({"embeddings.norm." + kind, "embeddings.norm." + kind});
    rules.push_back({"final_norm." + kind, "final_norm." + kind});
    rules.push_back({"layers.*.attn_norm." + kind, "layers.*.attn_norm." + kind});
    rules.push_back({"layers.*.attn.Wqkv." + kind, "layers.*.qkv." + kind});
    rules.push_back({"layers.*.attn.Wo." + kind, "layers.*.out." + kind});
    rules.push_back({"layers.*.mlp_norm." + kind, "layers.*.mlp_norm." + kind});
    rules.push_back({"layers.*.mlp.Wi." + kind, "layers.*.mlp_in." + kind});
    rules.push_back({"layers.*.mlp.Wo." + kind, "layers.*.mlp_out." + kind});
  }
  return rules;
}

}  // namespace

const Family& ModernBertFamily() {
  static const auto* family =
      new Family{"modernbert", {"modernbert"}, &ParseModernBert, {"model."}, &ModernBertRules};
  return *family;
}

}  // namespace longenc::encoder
