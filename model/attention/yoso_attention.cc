// YOSO attention ("yoso"; Zeng et al., "You Only Sample (Almost) Once: Linear Cost
// Self-Attention Via Bernoulli Sampling", ICML 2021, arXiv 2111.09714; mlpen/YOSO, HF yoso).
//
// Each query/key pair "collides" under m seeded SimHash functions of tau bits each with
// probability (1 − θ/π)^tau; the output sums the values of colliding keys through per-hash
// tables of 2^tau buckets and is L2-normalised per row:
//   Y_i = (1/m) Σ_f Σ_{j valid} 1[h_f(q_i) = h_f(k_j)] v_j,   out_i = Y_i / max(‖Y_i‖, 1e-12).
// Cost O(N·D·m·tau) for hashing plus O(m·N·D) for the tables; memory O(N·D + chunk·2^tau·D).
// With expectation=1 the expectation (YOSO-E) is computed exactly instead: O(N²) time, query
// blocks keep memory O(block·N).
//
// Options (docs/ATTENTION.md §3.4):
//   tau                int   default 8    bits per hash (⌈log₂ N⌉ of MiniLM's 256 tokens;
//                                         2^tau buckets per table)
//   hashes             int   default 32   m, number of hashes (the YOSO BERT-small configs)
//   expectation        bool  default 0    1 = YOSO-E (exact expectation, quadratic)
//   min_len_efficient  int   default 512  rows with fewer valid tokens run exact softmax
//
// Deviations from the official code: Gaussian projections drawn once per (layer, head) from
// spec.seed (not per call and batch instance, Y7; no fast Hadamard hash); the boolean mask is
// used directly (Y1); YOSO-E clamps the cosine (Y3); no depthwise conv term; padded rows are 0.
// Limitations: YOSO is a different kernel from softmax — unit-norm rows, no 1/√D temperature —
// so in a pretrained softmax model it changes every layer's output (docs/ATTENTION.md §3.5)
// unless the model is fine-tuned or distilled; no causal masks.
#include <memory>

#include "model/attention/attention_ops.h"
#include "model/attention/registry.h"
#include "model/attention/yoso.h"

namespace longenc::attention {
namespace {

struct YosoOptions {
  int64_t tau = 8;
  int64_t hashes = 32;
  bool expectation = false;
  int64_t min_len_efficient = internal::kDefaultMinLenEfficient;
};

class YosoAttention final : public Attention {
 public:
  YosoAttention(const YosoOptions& options, torch::Tensor projections)
      : options_(options), projections_(std::move(projections)) {}

  torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& key_valid) override {
    return internal::DispatchByLength(
        q, k, v, key_valid, options_.min_len_efficient,
        [this](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
               const torch::Tensor& valid) {
          // Heads in groups: the codes and table indices of all heads of a 64k-token document
          // at once took ~0.8 GB.
          return internal::RunInHeadGroups(
              q.size(0), q.size(1), q.size(2), [&](const torch::indexing::Slice& hs) {
                const torch::Tensor qh = q.index({torch::indexing::Slice(), hs}),
                                    kh = k.index({torch::indexing::Slice(), hs}),
                                    vh = v.index({torch::indexing::Slice(), hs});
                if (options_.expectation) {
                  return internal::L2NormalizeRows(
                      internal::YosoExpectationCumulation(qh, kh, vh, valid, options_.tau));
                }
                const torch::Tensor projections =
                    internal::StateOn(projections_, q.device()).index({hs});
                return internal::L2NormalizeRows(internal::YosoCumulation(
                    internal::YosoCodes(qh, projections, options_.tau),
                    internal::YosoCodes(kh, projections, options_.tau), vh, valid,
                    options_.tau));
              },
              internal::TokensPerHeadGroup(q.device()));
        });
  }
  std::string_view name() const override { return "yoso"; }

 private:
  YosoOptions options_;
  torch::Tensor projections_;  // [H, D, hashes · tau]
};

absl::StatusOr<std::unique_ptr<Attention>> CreateYoso(const AttentionSpec& spec) {
  OptionReader reader("yoso", spec.options);
  YosoOptions options;
  ASSIGN_OR_RETURN(options.tau, reader.Int("tau", options.tau, 0, 24));
  ASSIGN_OR_RETURN(options.hashes, reader.Int("hashes", options.hashes, 1, 4096));
  ASSIGN_OR_RETURN(options.expectation, reader.Bool("expectation", options.expectation));
  ASSIGN_OR_RETURN(options.min_len_efficient, internal::ReadMinLenEfficient(reader));
  RETURN_IF_ERROR(reader.Finish());
  torch::Tensor projections =
      options.expectation ? torch::Tensor()
                          : internal::MakeYosoProjections(spec, options.hashes, options.tau);
  return std::unique_ptr<Attention>(
      std::make_unique<YosoAttention>(options, std::move(projections)));
}

}  // namespace

LONGENC_REGISTER_ATTENTION("yoso", CreateYoso);

}  // namespace longenc::attention
