// YOSO attention pieces ("You Only Sample (Almost) Once", Zeng et al., ICML 2021,
// arXiv 2111.09714; reference code mlpen/YOSO): seeded Gaussian SimHash codes, the hash-table
// ("LSH cumulation") estimator and the YOSO-E expectation. Exposed so tests can compare the
// hash table with a brute-force collision matrix for the same codes (docs/ATTENTION.md T9) and
// check YOSO-E's weights (T14).
//
// Ownership: functions only; tensors in, tensors out.
// Thread-safety: stateless; safe from any thread.
#ifndef LONGENC_MODEL_ATTENTION_YOSO_H_
#define LONGENC_MODEL_ATTENTION_YOSO_H_

#include <cstdint>

#include <torch/torch.h>

#include "model/attention/attention.h"

namespace longenc::attention::internal {

// Gaussian projections [H, D, hashes·tau], drawn from spec.seed per (layer, head).
torch::Tensor MakeYosoProjections(const AttentionSpec& spec, int64_t hashes, int64_t tau);

// SimHash codes [B, H, N, hashes] int64 of x [B, H, N, D] with projections [H, D, hashes·tau]:
// code_f = Σ_b [x · r_{f·tau+b} > 0] · 2^b. Scale invariant in x.
torch::Tensor YosoCodes(const torch::Tensor& x, const torch::Tensor& projections, int64_t tau);

// The hash-table estimator for given codes [B, H, N, m]:
//   Y_i = (1/m) Σ_f Σ_{j valid} 1[q_code_{i,f} = k_code_{j,f}] · v_j,   padded rows 0.
// Tables hold 2^tau buckets per (b, h, f) with int64 flat indices (Y6); accumulation uses
// index_put_(accumulate), which is deterministic on CPU and CUDA. Works through the hashes one
// at a time with one reused [B·H·2^tau, D] table, so no per-hash copy of the values is made.
torch::Tensor YosoCumulation(const torch::Tensor& q_codes, const torch::Tensor& k_codes,
                             const torch::Tensor& v, const torch::Tensor& key_valid, int64_t tau);

// YOSO-E weights [B, H, N, N]: (1 − arccos(q̂·k̂)/π)^tau on valid (query, key) pairs, 0 elsewhere;
// the cosine is clamped to [−1, 1] (Y3), so q = k gives exactly 1 and q = −k gives 0.
torch::Tensor YosoExpectationWeights(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& key_valid, int64_t tau);

// Σ_j YOSO-E weight · v_j computed in query blocks (O(N²) time, O(block·N) memory).
torch::Tensor YosoExpectationCumulation(const torch::Tensor& q, const torch::Tensor& k,
                                        const torch::Tensor& v, const torch::Tensor& key_valid,
                                        int64_t tau);

// Y / max(‖Y‖₂, 1e-12) over the head dimension (the YOSO layer output, conv off).
torch::Tensor L2NormalizeRows(const torch::Tensor& y);

}  // namespace longenc::attention::internal

#endif  // LONGENC_MODEL_ATTENTION_YOSO_H_
