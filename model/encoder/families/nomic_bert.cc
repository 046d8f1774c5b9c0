// nomic_bert (nomic-embed-text v1/v1.5): post-norm blocks, fused Wqkv, RoPE, SwiGLU MLP.
//
// Two config dialects: the hub's remote-code keys (n_embd, n_layer, n_head, n_inner, n_positions,
// max_trained_positions, rotary_emb_base, rotary_emb_fraction, rotary_scaling_factor,
// activation_function, qkv_proj_bias, mlp_fc1_bias, mlp_fc2_bias, layer_norm_epsilon) and
// transformers 5's (hidden_size, ..., hidden_act, rope_parameters, no biases). Weight names:
// the hub's (encoder.layers.N.attn.Wqkv, mlp.fc11 = up, mlp.fc12 = gate, norm1, norm2, emb_ln)
// and transformers 5's (layers.N.self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, ...).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/families/family.h"
#include "model/encoder/families/rotary_rules.h"

namespace longenc::encoder {
namespace {

absl::Status ParseNomicBert(const ConfigReader& reader, EncoderConfig* c) {
  // Remote-code features with no counterpart here.
  RETURN_IF_ERROR(reader.RequireAbsentOr("prenorm", false, "only post-norm blocks are implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("rotary_emb_interleaved", false,
                                         "only the half-split rotation (GPT-NeoX style) is implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("rotary_emb_scale_base", nullptr, "xPos is not implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("causal", false, "encoders attend both ways"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("parallel_block", false, "only sequential blocks are implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("use_rms_norm", false, "only LayerNorm is implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("num_experts", 0, "mixture-of-experts layers are not implemented"));
  RETURN_IF_ERROR(reader.RequireAbsentOr("moe_every_n_layers", 0, "mixture-of-experts layers are not implemented"));

  const bool hub = reader.Has("n_embd");
  RETURN_IF_ERROR(ReadSizes(reader, {"n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon"}, c));
  c->pad_token_id = 0;
  RETURN_IF_ERROR(reader.Int({"pad_token_id"}, false, 0, &c->pad_token_id));

  // The trained length: what transformers calls max_position_embeddings, the hub
  // max_trained_positions (n_positions is only the size of a cache there).
  c->max_position_embeddings = 2048;
  RETURN_IF_ERROR(reader.Int({"max_trained_positions"}, false, 1, &c->max_position_embeddings));
  RETURN_IF_ERROR(reader.Int({"max_position_embeddings"}, false, 1, &c->max_position_embeddings));

  // The MLP is always gated; the hub names the gated activation, transformers the inner one.
  std::string act = "silu";
  if (reader.Has("activation_function")) {
    std::string hub_act;
    RETURN_IF_ERROR(reader.String({"activation_function"}, &hub_act));
    if (hub_act == "swiglu") {
      act = "silu";
    } else if (hub_act == "geglu") {
      act = "gelu";
    } else {
      return reader.Refuse("activation_function", hub_act, "supported: swiglu, geglu");
    }
  } else {
    RETURN_IF_ERROR(reader.String({"hidden_act"}, &act));
  }
  RETURN_IF_ERROR(CheckActivation(reader, "hidden_act", act));
  c->hidden_act = act;
  c->gated_mlp = true;

  // transformers 5 has no biases; the remote code's defaults have them all.
  bool qkv_bias = hub, fc1_bias = hub, fc2_bias = hub;
  RETURN_IF_ERROR(reader.Bool({"qkv_proj_bias"}, &qkv_bias));
  RETURN_IF_ERROR(reader.Bool({"mlp_fc1_bias"}, &fc1_bias));
  RETURN_IF_ERROR(reader.Bool({"mlp_fc2_bias"}, &fc2_bias));
  c->attention_bias = qkv_bias;
  c->mlp_in_bias = fc1_bias;
  c->mlp_out_bias = fc2_bias;

  c->positions = PositionKind::kRotary;
  c->rope.theta = 1000.0;
  if (reader.Has("rope_parameters")) {
    RETURN_IF_ERROR(ReadRopeParameters(reader, reader.json()["rope_parameters"], "rope_parameters",
                                       c->max_position_embeddings, &c->rope));
    double base = c->rope.theta;
    RETURN_IF_ERROR(reader.Double({"rotary_emb_base"}, false, &base));
    if (base != c->rope.theta) {
      return reader.Invalid("'rotary_emb_base' and 'rope_parameters.rope_theta' disagree");
    }
  } else {
    RETURN_IF_ERROR(reader.Double({"rotary_emb_base", "rope_theta"}, false, &c->rope.theta));
    if (c->rope.theta <= 1.0) return reader.Invalid("'rotary_emb_base' must be greater than 1");
    if (reader.Has("rotary_scaling_factor")) {
      // Dynamic NTK past the trained length, as the remote code does when the factor is set.
      RETURN_IF_ERROR(reader.Double({"rotary_scaling_factor"}, true, &c->rope.factor));
      if (c->rope.factor < 1.0) {
        return reader.Refuse("rotary_scaling_factor", c->rope.factor, "it must be at least 1");
      }
      c->rope.type = RopeType::kDynamic;
      c->rope.original_max_positions = c->max_position_embeddings;
    }
  }
  RETURN_IF_ERROR(reader.Double({"rotary_emb_fraction"}, false, &c->rope.fraction));
  if (c->rope.fraction <= 0 || c->rope.fraction > 1 ||
      static_cast<int64_t>(c->head_dim() * c->rope.fraction) % 2 != 0) {
    return reader.Refuse("rotary_emb_fraction", c->rope.fraction,
                         "it must be in (0, 1] and leave an even number of rotary dimensions");
  }
  return absl::OkStatus();
}

std::vector<WeightRule> NomicBertRules(const EncoderConfig& c) {
  std::vector<WeightRule> rules = {
      {"embeddings.word_embeddings.weight", "embeddings.word.weight"},
      {"embeddings.token_type_embeddings.weight", "embeddings.token_type.weight"},
      // Hub names.
      {"emb_ln.weight", "embeddings.norm.weight"},
      {"emb_ln.bias", "embeddings.norm.bias"},
      {"encoder.layers.*.attn.Wqkv.weight", "layers.*.qkv.weight"},
      {"encoder.layers.*.attn.Wqkv.bias", "layers.*.qkv.bias"},
      {"encoder.layers.*.attn.out_proj.weight", "layers.*.out.weight"},
      {"encoder.layers.*.attn.out_proj.bias", "layers.*.out.bias"},
      {"encoder.layers.*.mlp.fc12.weight", "layers.*.mlp_in.weight", 2, {0}},  // gate
      {"encoder.layers.*.mlp.fc12.bias", "layers.*.mlp_in.bias", 2, {0}},
      {"encoder.layers.*.mlp.fc11.weight", "layers.*.mlp_in.weight", 2, {1}},  // up
      {"encoder.layers.*.mlp.fc11.bias", "layers.*.mlp_in.bias", 2, {1}},
      {"encoder.layers.*.mlp.fc2.weight", "layers.*.mlp_out.weight"},
      {"encoder.layers.*.mlp.fc2.bias", "layers.*.mlp_out.bias"},
      {"encoder.layers.*.norm1.weight", "layers.*.attn_norm.weight"},
      {"encoder.layers.*.norm1.bias", "layers.*.attn_norm.bias"},
      {"encoder.layers.*.norm2.weight", "layers.*.mlp_norm.weight"},
      {"encoder.layers.*.norm2.bias", "layers.*.mlp_norm.bias"},
  };
  AddTransformersRotaryRules(&rules);
  return rules;
}

}  // namespace

const Family& NomicBertFamily() {
  static const auto* family = new Family{"nomic_bert", {"nomic_bert"}, &ParseNomicBert,
                                         {"nomic_bert.", "bert."}, &NomicBertRules};
  return *family;
}

}  // namespace longenc::encoder
