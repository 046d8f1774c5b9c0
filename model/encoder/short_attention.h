// Exact softmax attention of one head of one short document on the CPU, with AVX-512 kernels:
// the attention core of the packed short-document forward (packed_encoder.h).
//
// Why not LibTorch's SDPA: its CPU flash kernel computes its two products with MKL's sgemm,
// which runs AVX2 kernels on AMD CPUs, and at head size 32 the blocks are too small to pay
// back the packing; at 512 tokens it was 23 % of MiniLM's float32 forward and 34 % of its
// bfloat16 one. Here a block of 4 queries goes through scores, softmax and the value sum while
// its scores stay in cache ([4, n] float32), with every product on AVX-512 registers:
//   - float32: FMA, the keys transposed once per head;
//   - bfloat16: VDPBF16PS (AVX512-BF16), which multiplies pairs of bfloat16 values and adds in
//     float32. Scores are exact float32 sums of the bfloat16 inputs (what SDPA computes after
//     widening them); the softmax runs in float32; the probabilities are rounded to bfloat16
//     for the value sum, and the row is divided by the sum of the rounded probabilities, so
//     the weights still add to 1.
// The whole key range is one block: the row's maximum is known before any exponential, so
// there is no running rescale. Memory per thread: O(n · head_dim) for the reordered keys and
// values plus 4 · n scores.
//
// Torch-free (raw pointers); thread-safe: each calling thread has its own scratch buffers.
#ifndef LONGENC_MODEL_ENCODER_SHORT_ATTENTION_H_
#define LONGENC_MODEL_ENCODER_SHORT_ATTENTION_H_

#include <cstdint>

namespace longenc::encoder {

// Whether this CPU runs the kernel for the element type (float32: AVX-512F; bfloat16: also
// AVX512-BF16) at this head size (a multiple of 16).
bool ShortAttentionFloatSupported(int64_t head_dim);
bool ShortAttentionBf16Supported(int64_t head_dim);

// One head: out[i] = softmax(scale · q[i] · kᵀ) · v for the n rows of q, k and v, each row
// `head_dim` values, consecutive rows `in_stride` elements apart (rows of a fused Q/K/V
// projection); out rows are `out_stride` apart. bfloat16 values are passed as their bits.
// Call only where the matching Supported() is true.
void ShortAttentionFloat(const float* q, const float* k, const float* v, int64_t in_stride,
                         int64_t n, int64_t head_dim, float scale, float* out,
                         int64_t out_stride);
void ShortAttentionBf16(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                        int64_t in_stride, int64_t n, int64_t head_dim, float scale,
                        uint16_t* out, int64_t out_stride);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_SHORT_ATTENTION_H_
