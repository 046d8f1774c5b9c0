// Exact attention within a band: query i sees key j iff |i - j| <= window (and j is a real
// token). ModernBERT's local layers, at linear cost: queries go in blocks of `block` rows, each
// attending only to the keys of its block widened by `window` on both sides, so a document of
// N tokens costs N·(block + 2·window) scores instead of N².
//
// Implements attention::Attention so that an encoder layer can hold it like any variant; the
// registry never sees it (a local layer's attention is part of the architecture, not a choice).
// Thread-safety: stateless after construction.
#ifndef LONGENC_MODEL_ENCODER_BANDED_ATTENTION_H_
#define LONGENC_MODEL_ENCODER_BANDED_ATTENTION_H_

#include <cstdint>
#include <string_view>

#include <torch/torch.h>

#include "model/attention/attention.h"

namespace longenc::encoder {

class BandedAttention final : public attention::Attention {
 public:
  // block = 0 picks max(64, 2·window).
  explicit BandedAttention(int64_t window, int64_t block = 0);
  torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& key_valid) override;
  std::string_view name() const override { return "banded"; }

 private:
  int64_t window_;
  int64_t block_;
};

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_BANDED_ATTENTION_H_
