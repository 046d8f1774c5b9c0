// The attention-core interface: every variant (exact or approximate) turns per-head queries,
// keys and values into per-head context vectors. Projections into and out of heads belong to
// the encoder (model/encoder/), so a variant owns no Q/K/V/output weights.
//
// Ownership: the encoder owns one Attention per layer, created through the Registry
// (registry.h) at model load. Per-(layer, head) state (hash planes, surrogate tokens) is
// created at construction on spec.device from spec.seed, never per call, so identical inputs
// give identical outputs (docs/ATTENTION.md §1.3).
//
// Thread-safety: Forward() is called from the single inference thread; no internal locking.
#ifndef LONGENC_MODEL_ATTENTION_ATTENTION_H_
#define LONGENC_MODEL_ATTENTION_ATTENTION_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <torch/torch.h>

namespace longenc::attention {

// What every variant is constructed from.
struct AttentionSpec {
  int64_t layer = 0;       // which encoder layer this instance serves
  int64_t num_layers = 1;
  int64_t num_heads = 1;
  int64_t head_dim = 1;
  uint64_t seed = 0;       // seeds all random state together with (layer, head)
  torch::Device device = torch::kCPU;
  // Variant-specific settings from "key=value,key=value"; each variant parses its own keys,
  // documents their defaults and rejects unknown ones.
  std::map<std::string, std::string> options;
};

class Attention {
 public:
  virtual ~Attention() = default;
  // q, k, v: [B, H, N, D] float32; key_valid: [B, N] bool, true for real tokens.
  // Returns [B, H, N, D]; rows of padded queries are zero. Outputs of real tokens depend
  // neither on padded positions nor on other rows of the batch.
  virtual torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& key_valid) = 0;
  // Registry name; also a metric label. Stable: never reuse a name.
  virtual std::string_view name() const = 0;
};

}  // namespace longenc::attention

#endif  // LONGENC_MODEL_ATTENTION_ATTENTION_H_
