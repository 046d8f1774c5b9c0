#include "model/encoder/short_attention.h"

#include <immintrin.h>

#include <cstring>
#include <vector>

namespace longenc::encoder {
namespace {

constexpr int64_t kLanes = 16;  // float32 lanes of a 512-bit register
constexpr int kRows = 4;        // queries per block: their scores stay in cache

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Per-thread buffers, grown to the longest document seen; sized outside the AVX-512 code so
// that no standard-library code is compiled for AVX-512 (an inline copy could be the one the
// linker keeps).
struct Scratch {
  std::vector<float> keys;                // float32: keys transposed, [head_dim][n16]
  std::vector<uint32_t> key_pairs;        // bfloat16: [head_dim / 2][n16] pairs along the head
  std::vector<uint32_t> value_pairs;      // bfloat16: [ceil(n / 2)][head_dim] pairs of rows
  std::vector<float> scores;              // [kRows][n16]
  std::vector<uint16_t> probabilities;    // bfloat16: [kRows][n16]
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

template <typename T>
T* Sized(std::vector<T>& buffer, int64_t size) {
  if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(static_cast<size_t>(size));
  return buffer.data();
}

}  // namespace

bool ShortAttentionFloatSupported(int64_t head_dim) {
  static const bool cpu = __builtin_cpu_supports("avx512f");
  return cpu && head_dim > 0 && head_dim % kLanes == 0;
}

bool ShortAttentionBf16Supported(int64_t head_dim) {
  static const bool cpu =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return cpu && head_dim > 0 && head_dim % kLanes == 0;
}

// Everything below runs only where the Supported() checks above passed.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
// GCC 12's intrinsic headers read an "undefined" register on purpose (_mm512_undefined_*).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace {

// The register tiles below are arrays indexed by compile-time loops: unrolled, they stay in
// registers (GCC 12 at -O2 otherwise keeps them on the stack).
#define UNROLL _Pragma("GCC unroll 16")

template <int R, int C>
void Zero(__m512 (&acc)[R][C]) {
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
}

// acc[r][c] += Σ_s rows[r][s] · columns[s · column_stride + 16c ...]: a tile of R rows and
// 16·C columns of a product, by FMA.
template <int R, int C>
void AccumulateProducts(__m512 (&acc)[R][C], const float* const (&rows)[R], const float* columns,
                        int64_t column_stride, int64_t steps) {
  for (int64_t s = 0; s < steps; ++s) {
    __m512 column[C];
    UNROLL for (int c = 0; c < C; ++c) {
      column[c] = _mm512_loadu_ps(columns + s * column_stride + c * kLanes);
    }
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(rows[r][s]);
      UNROLL for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(x, column[c], acc[r][c]);
    }
  }
}

uint32_t Word(const uint16_t* pair) {
  uint32_t w;
  std::memcpy(&w, pair, sizeof(w));
  return w;
}

// The same in bfloat16 pairs: step s multiplies the pair rows[r][2s, 2s + 1] with the pairs
// of 16·C columns at columns[s · column_stride ...] (VDPBF16PS), adding in float32.
template <int R, int C>
void AccumulatePairs(__m512 (&acc)[R][C], const uint16_t* const (&rows)[R],
                     const uint32_t* columns, int64_t column_stride, int64_t steps) {
  for (int64_t s = 0; s < steps; ++s) {
    __m512bh column[C];
    UNROLL for (int c = 0; c < C; ++c) {
      column[c] = reinterpret_cast<__m512bh>(
          _mm512_loadu_si512(columns + s * column_stride + c * kLanes));
    }
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512bh x = reinterpret_cast<__m512bh>(
          _mm512_set1_epi32(static_cast<int>(Word(rows[r] + 2 * s))));
      UNROLL for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], column[c], x);
    }
  }
}

// Row r of a score tile to scores[r · row_stride ...].
template <int R, int C>
void StoreScores(const __m512 (&acc)[R][C], float* scores, int64_t row_stride) {
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int c = 0; c < C; ++c)
      _mm512_storeu_ps(scores + r * row_stride + c * kLanes, acc[r][c]);
}

__mmask16 LanesBelow(int64_t count) {
  if (count >= kLanes) return 0xFFFF;
  return count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1);
}

// e^x for x ≤ 0: 2^n · e^r with |r| ≤ ln2/2 and e^r to its r⁶ term (relative error below
// 2e-7, about float32's rounding); below -87 the result is 0-like (e^-87 ≈ 1.6e-38).
__m512 ExpNonPositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 in two parts
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// The row's n scores become e^(scale·(s − max)), zero from n to n16 (passed to `store` one
// vector at a time); returns the sum of what `store` returns (the values as stored).
template <typename Store>
float Exponentials(const float* scores, int64_t n, int64_t n16, float scale, Store store) {
  __m512 high = _mm512_set1_ps(-__builtin_inff());
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 m = LanesBelow(n - j);
    high = _mm512_mask_max_ps(high, m, high, _mm512_maskz_loadu_ps(m, scores + j));
  }
  const __m512 vscale = _mm512_set1_ps(scale);
  const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(high) * scale);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n16; j += kLanes) {
    const __m512 e = _mm512_maskz_mov_ps(
        LanesBelow(n - j),
        ExpNonPositive(_mm512_fmsub_ps(_mm512_loadu_ps(scores + j), vscale, shift)));
    sum = _mm512_add_ps(sum, store(j, e));
  }
  return _mm512_reduce_add_ps(sum);
}

// 16 float32 values rounded to bfloat16 (round to nearest even), and those back to float32.
__m256i ToBf16(__m512 x) { return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)); }
__m512 FromBf16(__m256i x) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16));
}

// float32: products by FMA; keys transposed so that 16 keys' values at one head index load
// as one vector.
struct FloatKernel {
  const float *q, *k, *v;
  int64_t stride, n, n16, head_dim;
  float *keys, *scores, *out;
  int64_t out_stride;

  void Prepare() const {
    for (int64_t d = 0; d < head_dim; ++d) {
      float* row = keys + d * n16;
      for (int64_t j = 0; j < n; ++j) row[j] = k[j * stride + d];
      for (int64_t j = n; j < n16; ++j) row[j] = 0.0f;
    }
  }

  // scores[r][j0, j0 + 16·C) for queries i0 .. i0 + R.
  template <int R, int C>
  void Scores(int64_t i0, int64_t j0) const {
    __m512 acc[R][C];
    Zero(acc);
    const float* rows[R];
    UNROLL for (int r = 0; r < R; ++r) rows[r] = q + (i0 + r) * stride;
    AccumulateProducts(acc, rows, keys + j0, n16, head_dim);
    StoreScores(acc, scores + j0, n16);
  }

  float Softmax(int r, float scale) const {
    float* row = scores + r * n16;
    return Exponentials(row, n, n16, scale, [row](int64_t j, __m512 e) {
      _mm512_storeu_ps(row + j, e);
      return e;
    });
  }

  // out[i0 + r][c0, c0 + 16·V) = Σ_j p[r][j] · v[j] / sum[r].
  template <int R, int V>
  void Values(int64_t i0, int64_t c0, const float* inverse_sum) const {
    __m512 acc[R][V];
    Zero(acc);
    const float* rows[R];
    UNROLL for (int r = 0; r < R; ++r) rows[r] = scores + r * n16;
    AccumulateProducts(acc, rows, v + c0, stride, n);
    UNROLL for (int r = 0; r < R; ++r)
      UNROLL for (int c = 0; c < V; ++c)
        _mm512_storeu_ps(out + (i0 + r) * out_stride + c0 + c * kLanes,
                         _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inverse_sum[r])));
  }
};

// bfloat16: VDPBF16PS adds the products of two adjacent bfloat16 pairs into each float32
// lane, so keys are laid out as pairs along the head (a 32-bit word of a key row), values as
// pairs of consecutive rows, and a query's (or a probability row's) pair is broadcast.
struct Bf16Kernel {
  const uint16_t *q, *k, *v;
  int64_t stride, n, n16, head_dim;
  uint32_t *key_pairs, *value_pairs;
  float* scores;
  uint16_t* probabilities;
  uint16_t* out;
  int64_t out_stride;

  void Prepare() const {
    const int64_t pairs = head_dim / 2;
    for (int64_t p = 0; p < pairs; ++p) {
      uint32_t* row = key_pairs + p * n16;
      for (int64_t j = 0; j < n; ++j) row[j] = Word(k + j * stride + 2 * p);
      for (int64_t j = n; j < n16; ++j) row[j] = 0;
    }
    for (int64_t j = 0; j < n; j += 2) {
      const uint16_t* first = v + j * stride;
      const uint16_t* second = j + 1 < n ? v + (j + 1) * stride : nullptr;
      uint32_t* row = value_pairs + (j / 2) * head_dim;
      for (int64_t c = 0; c < head_dim; ++c) {
        row[c] = first[c] | (second == nullptr ? 0u : uint32_t{second[c]} << 16);
      }
    }
  }

  template <int R, int C>
  void Scores(int64_t i0, int64_t j0) const {
    __m512 acc[R][C];
    Zero(acc);
    const uint16_t* rows[R];
    UNROLL for (int r = 0; r < R; ++r) rows[r] = q + (i0 + r) * stride;
    AccumulatePairs(acc, rows, key_pairs + j0, n16, head_dim / 2);
    StoreScores(acc, scores + j0, n16);
  }

  // The probabilities are rounded to bfloat16; the sum is of the rounded values.
  float Softmax(int r, float scale) const {
    uint16_t* row = probabilities + r * n16;
    return Exponentials(scores + r * n16, n, n16, scale, [row](int64_t j, __m512 e) {
      const __m256i rounded = ToBf16(e);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + j), rounded);
      return FromBf16(rounded);
    });
  }

  template <int R, int V>
  void Values(int64_t i0, int64_t c0, const float* inverse_sum) const {
    __m512 acc[R][V];
    Zero(acc);
    const uint16_t* rows[R];
    UNROLL for (int r = 0; r < R; ++r) rows[r] = probabilities + r * n16;
    AccumulatePairs(acc, rows, value_pairs + c0, head_dim, (n + 1) / 2);
    UNROLL for (int r = 0; r < R; ++r)
      UNROLL for (int c = 0; c < V; ++c) {
        const __m512 o = _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inverse_sum[r]));
        _mm256_storeu_si256(
            reinterpret_cast<__m256i*>(out + (i0 + r) * out_stride + c0 + c * kLanes),
            ToBf16(o));
      }
  }
};

// R queries from i0: their scores in tiles of 64 keys (then 16), softmax, then the value sum
// in tiles of 64 output columns (then 32, 16).
template <int R, typename Kernel>
void Block(const Kernel& kernel, int64_t i0, float scale) {
  int64_t j0 = 0;
  for (; j0 + 4 * kLanes <= kernel.n16; j0 += 4 * kLanes) kernel.template Scores<R, 4>(i0, j0);
  for (; j0 < kernel.n16; j0 += kLanes) kernel.template Scores<R, 1>(i0, j0);
  float inverse_sum[R];
  UNROLL for (int r = 0; r < R; ++r) inverse_sum[r] = 1.0f / kernel.Softmax(r, scale);
  int64_t c0 = 0;
  for (; c0 + 4 * kLanes <= kernel.head_dim; c0 += 4 * kLanes) {
    kernel.template Values<R, 4>(i0, c0, inverse_sum);
  }
  if (c0 + 2 * kLanes <= kernel.head_dim) {
    kernel.template Values<R, 2>(i0, c0, inverse_sum);
    c0 += 2 * kLanes;
  }
  if (c0 < kernel.head_dim) kernel.template Values<R, 1>(i0, c0, inverse_sum);
}

template <typename Kernel>
void Run(const Kernel& kernel, float scale) {
  kernel.Prepare();
  int64_t i0 = 0;
  for (; i0 + kRows <= kernel.n; i0 += kRows) Block<kRows>(kernel, i0, scale);
  for (; i0 < kernel.n; ++i0) Block<1>(kernel, i0, scale);
}

#undef UNROLL
}  // namespace
#pragma GCC diagnostic pop
#pragma GCC pop_options

void ShortAttentionFloat(const float* q, const float* k, const float* v, int64_t in_stride,
                         int64_t n, int64_t head_dim, float scale, float* out,
                         int64_t out_stride) {
  if (n <= 0) return;
  Scratch& s = ThreadScratch();
  const int64_t n16 = RoundUp(n, kLanes);
  const FloatKernel kernel{q, k, v, in_stride, n, n16, head_dim,
                           Sized(s.keys, head_dim * n16), Sized(s.scores, kRows * n16), out,
                           out_stride};
  Run(kernel, scale);
}

void ShortAttentionBf16(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                        int64_t in_stride, int64_t n, int64_t head_dim, float scale,
                        uint16_t* out, int64_t out_stride) {
  if (n <= 0) return;
  Scratch& s = ThreadScratch();
  const int64_t n16 = RoundUp(n, kLanes);
  const Bf16Kernel kernel{q, k, v, in_stride, n, n16, head_dim,
                          Sized(s.key_pairs, head_dim / 2 * n16),
                          Sized(s.value_pairs, (n + 1) / 2 * head_dim),
                          Sized(s.scores, kRows * n16),
                          Sized(s.probabilities, kRows * n16),
                          out, out_stride};
  Run(kernel, scale);
}

}  // namespace longenc::encoder
