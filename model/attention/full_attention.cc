// Exact softmax attention ("full"), the reference every approximate variant is tested against.
//
//   out = softmax(q kᵀ / √D + mask) v, mask = -inf on padded keys; padded query rows are zero.
//
// Implementation: at::scaled_dot_product_attention with a boolean key mask broadcast as
// [B, 1, 1, N]. On CPU (torch 2.11) this runs the fused flash kernel, which never materialises
// the N×N score matrix even with a mask (measured: +17 MB peak RSS at N = 8192, H = 12, where
// an unfused path would need 3.2 GB); on CUDA the memory-efficient kernel takes boolean masks.
//
// Options:
//   query_block  int  default 0  process queries in blocks of this many rows (0 = one call).
//                                Only useful for an SDPA backend that falls back to the unfused
//                                math path; bench/attention_bench.cc measures both on CPU.
// Limitations: self-attention with a key-padding mask only (no causal or arbitrary masks).
#include <limits>
#include <memory>

#include "model/attention/attention_ops.h"
#include "model/attention/registry.h"

namespace longenc::attention {
namespace {

class FullAttention final : public Attention {
 public:
  explicit FullAttention(int64_t query_block) : query_block_(query_block) {}

  torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& key_valid) override {
    const int64_t block = query_block_;
    return internal::DispatchByLength(
        q, k, v, key_valid, /*min_len=*/0,
        [block](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                const torch::Tensor& valid) {
          return internal::ExactAttention(q, k, v, valid, block);
        });
  }
  std::string_view name() const override { return "full"; }

 private:
  int64_t query_block_;
};

absl::StatusOr<std::unique_ptr<Attention>> CreateFull(const AttentionSpec& spec) {
  OptionReader reader("full", spec.options);
  ASSIGN_OR_RETURN(const int64_t query_block,
                   reader.Int("query_block", 0, 0, std::numeric_limits<int64_t>::max()));
  RETURN_IF_ERROR(reader.Finish());
  return std::unique_ptr<Attention>(std::make_unique<FullAttention>(query_block));
}

}  // namespace

LONGENC_REGISTER_ATTENTION("full", CreateFull);

}  // namespace longenc::attention
