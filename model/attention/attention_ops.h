// Tensor helpers shared by the attention variants: input checks, the exact masked attention
// (also the short-input fallback of every approximate variant), the length dispatcher, and
// seeded per-(layer, head) random state.
//
// Ownership: functions only; tensors in, tensors out.
// Thread-safety: stateless; safe from any thread.
#ifndef LONGENC_MODEL_ATTENTION_ATTENTION_OPS_H_
#define LONGENC_MODEL_ATTENTION_ATTENTION_OPS_H_

#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "model/attention/attention.h"
#include "model/attention/options.h"

namespace longenc::attention::internal {

// Default of the `min_len_efficient` option (docs/ATTENTION.md §1.5): below this many valid
// tokens an approximate variant runs exact attention, which is cheaper and exact there.
inline constexpr int64_t kDefaultMinLenEfficient = 512;

// Throws c10::Error (TORCH_CHECK) unless q, k, v are [B, H, N, D] floating tensors of one shape
// and key_valid is [B, N] bool on the same device. The encoder converts the exception to a
// Status at the model boundary.
void CheckInputs(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                 const torch::Tensor& key_valid);

// Sets the output rows of padded queries to zero. out: [B, H, N, D], key_valid: [B, N].
torch::Tensor ZeroPaddedQueries(const torch::Tensor& out, const torch::Tensor& key_valid);

// Exact softmax(q kᵀ/√D + mask) v in fp32 via at::scaled_dot_product_attention with a boolean
// key mask broadcast as [B, 1, 1, N]; padded query rows are zero. With query_block > 0 the
// queries are processed in blocks of that many rows, so even an unfused SDPA backend holds at
// most a [B, H, query_block, N] score block. Under a checkpoint (model/checkpoint.h) a long input
// runs one head and block of rows at a time (kExactStepScores) with a checkpoint before each.
torch::Tensor ExactAttention(const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v, const torch::Tensor& key_valid,
                             int64_t query_block = 0);

// An efficient core: same arguments and contract as Attention::Forward, fp32 inputs.
using Core = std::function<torch::Tensor(const torch::Tensor& q, const torch::Tensor& k,
                                         const torch::Tensor& v, const torch::Tensor& key_valid)>;

// The Forward of every variant. Validates inputs, computes in fp32 and returns q's dtype;
// drops trailing positions that are padding in every row; runs `efficient` on the rows with
// at least `min_len` valid tokens and exact attention on the others, so each row's result
// depends only on its own valid tokens, never on its batch-mates. Rows without any valid token
// are zero. The row lengths come from the host (model/device.h RowLengthsOf): on an accelerator
// at most one device read per forward, none when the backend noted its inputs.
torch::Tensor DispatchByLength(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& key_valid,
                               int64_t min_len, const Core& efficient);

// Batch · tokens per head group of RunInHeadGroups: one head of a 16k-token document at once.
// Small groups keep each temporary small enough for malloc to reuse freed heap memory instead of
// mapping (and the kernel zeroing) fresh pages for every one: going from 1 << 17 to 1 << 14
// took the whole encoder with i-clustered at 16k tokens from 19.1 to 12.4 s and from 1.51 to
// 1.07 GB peak RSS (commit 7a94225).
inline constexpr int64_t kTokensPerHeadGroup = int64_t{1} << 14;

// Working memory per (token, head) that the head groups of an accelerator are sized for: an
// estimate for i-clustered at its request limits (model/request_policy.h: topk and clusters up
// to 512 hold [N, topk] tile products and [C, N] centroid logits, about 12 KiB per token and
// head). CAST adds its κ×κ blocks per head (cast_attention.cc).
inline constexpr int64_t kGroupBytesPerTokenHead = int64_t{16} << 10;

// Batch · tokens per head group on `device`: kTokensPerHeadGroup on CPU (page reuse, above); on
// an accelerator a quarter of its free memory when first asked (after the model is loaded) over
// `bytes_per_token_head`: on a GPU with 20 GB free all 12 heads of a 16k-token document in one
// group instead of one head at a time.
int64_t TokensPerHeadGroup(const torch::Device& device,
                           int64_t bytes_per_token_head = kGroupBytesPerTokenHead);

// Scores (batch · heads · query rows · keys) per step of a long exact pass: one head and 4096
// query rows of a 16k-token document, about 0.1 s on a 2-core CPU between checkpoints.
inline constexpr int64_t kExactStepScores = int64_t{1} << 26;

// Whether reading `t`'s values on the host inside a layer is free: true on CPU, false on an
// accelerator, where the variants take paths whose shapes and loop ends need no read-back
// (sizes bounded by the shapes, rounds that stop late). Under ScopedAcceleratorPaths it is false
// on CPU too, so the tests run those paths here and compare them with the CPU ones.
bool HostReadsAreFree(const torch::Tensor& t);

// While alive, HostReadsAreFree is false on this thread (tests).
class ScopedAcceleratorPaths {
 public:
  ScopedAcceleratorPaths();
  ~ScopedAcceleratorPaths();
  ScopedAcceleratorPaths(const ScopedAcceleratorPaths&) = delete;
  ScopedAcceleratorPaths& operator=(const ScopedAcceleratorPaths&) = delete;

 private:
  bool previous_;
};

// Heads are independent in every variant: runs `per_group` on consecutive head ranges of at
// most max(1, tokens_per_group / (batch · n)) heads and concatenates the [B, h, N, D] results
// along the head dimension, which bounds the per-call memory of the intermediates. A checkpoint
// (model/checkpoint.h) precedes each group when there is more than one.
torch::Tensor RunInHeadGroups(
    int64_t batch, int64_t heads, int64_t n,
    const std::function<torch::Tensor(const torch::indexing::Slice& heads)>& per_group,
    int64_t tokens_per_group = kTokensPerHeadGroup);

// Moves per-(layer, head) state created at load (hash planes, projections, surrogates) to
// `device` on first use there and returns it; later calls on the same device are free.
const torch::Tensor& StateOn(torch::Tensor& state, const torch::Device& device);

// Reads the `min_len_efficient` option shared by the approximate variants.
absl::StatusOr<int64_t> ReadMinLenEfficient(OptionReader& reader,
                                            int64_t default_value = kDefaultMinLenEfficient);

// A 64-bit seed for one random stream of one (layer, head): splitmix64 over the parts, so
// streams never share state and do not depend on the batch or the sequence length.
uint64_t MixSeed(uint64_t seed, int64_t layer, int64_t head, uint64_t stream);

// Standard normal values of shape [num_heads, per_head_shape...], head h drawn from
// MixSeed(spec.seed, spec.layer, h, stream) on the CPU generator (so CPU and CUDA get the same
// numbers), then moved to spec.device.
torch::Tensor SeededNormal(const AttentionSpec& spec, uint64_t stream,
                           torch::IntArrayRef per_head_shape);

}  // namespace longenc::attention::internal

#endif  // LONGENC_MODEL_ATTENTION_ATTENTION_OPS_H_
