#include "model/encoder/rope.h"

#include <algorithm>
#include <cmath>

namespace longenc::encoder {
namespace {

// base^(-2i/d) for i < d/2, as transformers writes it: 1 / base ** (arange(0, d, 2) / d).
torch::Tensor DefaultFrequencies(double base, int64_t dim) {
  return 1.0 / torch::pow(base, torch::arange(0, dim, 2, torch::kFloat) / static_cast<double>(dim));
}

// YaRN's correction dimension for a number of rotations over the original length.
double CorrectionDim(double rotations, int64_t dim, double base, int64_t original) {
  return (dim * std::log(original / (rotations * 2 * M_PI))) / (2 * std::log(base));
}

}  // namespace

Rope::Rope(const RopeConfig& config, int64_t head_dim)
    : config_(config), rotary_dim_(static_cast<int64_t>(head_dim * config.fraction)) {
  if (config_.type == RopeType::kYarn) {
    attention_scaling_ = config_.attention_factor > 0 ? config_.attention_factor
                         : config_.factor <= 1     ? 1.0
                                                   : 0.1 * std::log(config_.factor) + 1.0;
  }
}

torch::Tensor Rope::InverseFrequencies(int64_t n) const {
  const int64_t dim = rotary_dim_;
  switch (config_.type) {
    case RopeType::kDefault:
      return DefaultFrequencies(config_.theta, dim);
    case RopeType::kLinear:
      return DefaultFrequencies(config_.theta, dim) / config_.factor;
    case RopeType::kDynamic: {
      const int64_t original = config_.original_max_positions;
      if (n <= original) return DefaultFrequencies(config_.theta, dim);
      // transformers computes the grown base from the length tensor, so in fp32.
      torch::Tensor length = torch::tensor(n, torch::kLong);
      torch::Tensor base =
          config_.theta * ((config_.factor * length / original) - (config_.factor - 1))
                              .pow(static_cast<double>(dim) / static_cast<double>(dim - 2));
      return 1.0 / torch::pow(base, torch::arange(0, dim, 2, torch::kFloat) / static_cast<double>(dim));
    }
    case RopeType::kYarn: {
      const double base = config_.theta;
      torch::Tensor pos_freqs =
          torch::pow(base, torch::arange(0, dim, 2, torch::kFloat) / static_cast<double>(dim));
      torch::Tensor extrapolation = 1.0 / pos_freqs;
      torch::Tensor interpolation = 1.0 / (config_.factor * pos_freqs);
      double low = CorrectionDim(config_.beta_fast, dim, base, config_.original_max_positions);
      double high = CorrectionDim(config_.beta_slow, dim, base, config_.original_max_positions);
      if (config_.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;  // no division by zero in the ramp
      torch::Tensor ramp = torch::clamp((torch::arange(dim / 2, torch::kFloat) - low) / (high - low), 0, 1);
      torch::Tensor extrapolation_factor = 1 - ramp;
      return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
    }
  }
  return DefaultFrequencies(config_.theta, dim);
}

std::pair<torch::Tensor, torch::Tensor> Rope::CosSin(int64_t n, const torch::Device& device) const {
  torch::Tensor inv_freq = InverseFrequencies(n).to(device);
  torch::Tensor positions = torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(device));
  torch::Tensor freqs = positions.unsqueeze(1).to(torch::kFloat) * inv_freq.unsqueeze(0);  // [n, d/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);                                       // [n, d]
  torch::Tensor cos = emb.cos(), sin = emb.sin();
  if (attention_scaling_ != 1.0) {
    cos = cos * attention_scaling_;
    sin = sin * attention_scaling_;
  }
  return {cos, sin};
}

torch::Tensor Rope::Apply(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) const {
  const int64_t d = x.size(-1);
  torch::Tensor rot = rotary_dim_ == d ? x : x.narrow(-1, 0, rotary_dim_);
  const int64_t half = rotary_dim_ / 2;
  torch::Tensor rotated_half = torch::cat({-rot.narrow(-1, half, half), rot.narrow(-1, 0, half)}, -1);
  torch::Tensor out = rot * cos + rotated_half * sin;  // cos/sin broadcast over [B, H]
  if (rotary_dim_ == d) return out;
  return torch::cat({out, x.narrow(-1, rotary_dim_, d - rotary_dim_)}, -1);
}

}  // namespace longenc::encoder
