#include "model/encoder/families/rotary_rules.h"

#include <string>

namespace longenc::encoder {

void AddTransformersRotaryRules(std::vector<WeightRule>* rules) {
  rules->push_back({"embeddings.LayerNorm.weight", "embeddings.norm.weight"});
  rules->push_back({"embeddings.LayerNorm.bias", "embeddings.norm.bias"});
  for (const std::string kind : {"weight", "bias"}) {
    const std::string layer = "layers.*.";
    rules->push_back({layer + "self_attn.q_proj." + kind, layer + "qkv." + kind, 3, {0}});
    rules->push_back({layer + "self_attn.k_proj." + kind, layer + "qkv." + kind, 3, {1}});
    rules->push_back({layer + "self_attn.v_proj." + kind, layer + "qkv." + kind, 3, {2}});
    rules->push_back({layer + "self_attn.o_proj." + kind, layer + "out." + kind});
    rules->push_back({layer + "mlp.gate_proj." + kind, layer + "mlp_in." + kind, 2, {0}});
    rules->push_back({layer + "mlp.up_proj." + kind, layer + "mlp_in." + kind, 2, {1}});
    rules->push_back({layer + "mlp.down_proj." + kind, layer + "mlp_out." + kind});
    rules->push_back({layer + "post_attention_layernorm." + kind, layer + "attn_norm." + kind});
    rules->push_back({layer + "post_mlp_layernorm." + kind, layer + "mlp_norm." + kind});
  }
}

}  // namespace longenc::encoder
