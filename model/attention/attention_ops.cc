#include "model/attention/attention_ops.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/DeviceAccelerator.h>

#include "absl/synchronization/mutex.h"

#include "model/checkpoint.h"
#include "model/device.h"

namespace longenc::attention::internal {

using torch::indexing::Slice;

void CheckInputs(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                 const torch::Tensor& key_valid) {
  TORCH_CHECK(q.dim() == 4, "attention: q must be [B, H, N, D], got ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "attention: q, k, v must have one shape, got ", q.sizes(), " ", k.sizes(), " ",
              v.sizes());
  TORCH_CHECK(q.is_floating_point() && k.scalar_type() == q.scalar_type() &&
                  v.scalar_type() == q.scalar_type(),
              "attention: q, k, v must share one floating dtype");
  TORCH_CHECK(key_valid.dim() == 2 && key_valid.size(0) == q.size(0) &&
                  key_valid.size(1) == q.size(2),
              "attention: key_valid must be [B, N] = [", q.size(0), ", ", q.size(2), "], got ",
              key_valid.sizes());
  TORCH_CHECK(key_valid.scalar_type() == torch::kBool, "attention: key_valid must be bool");
  TORCH_CHECK(key_valid.device() == q.device() && k.device() == q.device() &&
                  v.device() == q.device(),
              "attention: all inputs must be on one device");
}

torch::Tensor ZeroPaddedQueries(const torch::Tensor& out, const torch::Tensor& key_valid) {
  // masked_fill (not a multiply) so that NaN/inf in padded rows cannot survive.
  return out.masked_fill(key_valid.logical_not().unsqueeze(1).unsqueeze(-1), 0.0);
}

torch::Tensor ExactAttention(const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v, const torch::Tensor& key_valid,
                             int64_t query_block) {
  const torch::Tensor mask = key_valid.unsqueeze(1).unsqueeze(1);  // [B, 1, 1, N]
  const int64_t batch = q.size(0), heads = q.size(1), n = q.size(2);
  // Under a checkpoint, long inputs go in steps of at most kExactStepScores scores (a head and
  // a block of query rows each) with a checkpoint before each, so a long exact pass can pause
  // for short batches; each query row's result is the same whichever block computes it.
  int64_t block = query_block > 0 ? std::min(query_block, n) : n;
  const bool stepped =
      model::CurrentCheckpoint() != nullptr && batch * heads * n * n > kExactStepScores;
  if (stepped) block = std::clamp<int64_t>(kExactStepScores / std::max<int64_t>(1, batch * n), 1, block);
  if (!stepped && block >= n) {
    return ZeroPaddedQueries(at::scaled_dot_product_attention(q, k, v, mask), key_valid);
  }
  const int64_t head_step = stepped ? 1 : heads;
  std::vector<torch::Tensor> per_head;
  for (int64_t h = 0; h < heads; h += head_step) {
    const Slice hs(h, h + head_step);
    const torch::Tensor kh = k.index({Slice(), hs}), vh = v.index({Slice(), hs});
    std::vector<torch::Tensor> blocks;
    for (int64_t start = 0; start < n; start += block) {
      if (stepped) model::AtCheckpoint();
      const int64_t end = std::min(n, start + block);
      blocks.push_back(at::scaled_dot_product_attention(
          q.index({Slice(), hs, Slice(start, end)}), kh, vh, mask));
    }
    per_head.push_back(torch::cat(blocks, 2));
  }
  return ZeroPaddedQueries(torch::cat(per_head, 1), key_valid);
}

torch::Tensor DispatchByLength(const torch::Tensor& q_in, const torch::Tensor& k_in,
                               const torch::Tensor& v_in, const torch::Tensor& key_valid,
                               int64_t min_len, const Core& efficient) {
  CheckInputs(q_in, k_in, v_in, key_valid);
  // Padded positions are zeroed up front so that no garbage (not even inf/NaN) in them can
  // reach a valid output through 0 · x products inside a variant.
  const torch::Tensor pad = key_valid.logical_not().unsqueeze(1).unsqueeze(-1);  // [B,1,N,1]
  const torch::Tensor q = q_in.to(torch::kFloat).masked_fill(pad, 0.0);
  const torch::Tensor k = k_in.to(torch::kFloat).masked_fill(pad, 0.0);
  const torch::Tensor v = v_in.to(torch::kFloat).masked_fill(pad, 0.0);
  const int64_t batch = q.size(0);
  const int64_t n = q.size(2);
  torch::Tensor out = torch::zeros_like(q);
  if (batch == 0 || n == 0) return out.to(q_in.scalar_type());

  // Valid tokens and one past the last valid position per row, on the host: noted by the
  // backend or read once per forward (model/device.h), never per layer.
  const model::RowLengths lengths = model::RowLengthsOf(key_valid);
  std::vector<int64_t> long_rows, short_rows;
  int64_t long_end = 0, short_end = 0;
  for (int64_t b = 0; b < batch; ++b) {
    if (lengths.valid[b] == 0) continue;  // nothing to attend to: zero output
    if (lengths.valid[b] >= min_len) {
      long_rows.push_back(b);
      long_end = std::max(long_end, lengths.end[b]);
    } else {
      short_rows.push_back(b);
      short_end = std::max(short_end, lengths.end[b]);
    }
  }
  auto run = [&](const std::vector<int64_t>& rows, int64_t end, const Core& core) {
    if (rows.empty()) return;
    const Slice keep(0, end);
    if (static_cast<int64_t>(rows.size()) == batch) {
      torch::Tensor sub =
          core(q.index({Slice(), Slice(), keep}), k.index({Slice(), Slice(), keep}),
               v.index({Slice(), Slice(), keep}), key_valid.index({Slice(), keep}));
      out.index_put_({Slice(), Slice(), keep}, sub);
      return;
    }
    // host-sync-ok: built on the host, copied without waiting (pinned memory on a device).
    const torch::Tensor idx = model::ToDeviceAsync(torch::tensor(rows, torch::kLong), q.device());
    torch::Tensor sub = core(q.index_select(0, idx).index({Slice(), Slice(), keep}),
                             k.index_select(0, idx).index({Slice(), Slice(), keep}),
                             v.index_select(0, idx).index({Slice(), Slice(), keep}),
                             key_valid.index_select(0, idx).index({Slice(), keep}));
    if (end < n) sub = torch::constant_pad_nd(sub, {0, 0, 0, n - end});
    out.index_copy_(0, idx, sub);
  };
  const Core exact = [](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& valid) { return ExactAttention(q, k, v, valid); };
  run(short_rows, short_end, exact);
  run(long_rows, long_end, efficient);
  return out.to(q_in.scalar_type());
}

torch::Tensor RunInHeadGroups(
    int64_t batch, int64_t heads, int64_t n,
    const std::function<torch::Tensor(const torch::indexing::Slice& heads)>& per_group,
    int64_t tokens_per_group) {
  const int64_t group =
      std::clamp<int64_t>(tokens_per_group / std::max<int64_t>(1, batch * n), 1, heads);
  if (group >= heads) return per_group(Slice(0, heads));
  std::vector<torch::Tensor> outs;
  for (int64_t h0 = 0; h0 < heads; h0 += group) {
    model::AtCheckpoint();
    outs.push_back(per_group(Slice(h0, std::min(heads, h0 + group))));
  }
  return torch::cat(outs, 1);
}

namespace {
thread_local bool accelerator_paths = false;
}  // namespace

bool HostReadsAreFree(const torch::Tensor& t) { return t.is_cpu() && !accelerator_paths; }

ScopedAcceleratorPaths::ScopedAcceleratorPaths() : previous_(accelerator_paths) {
  accelerator_paths = true;
}

ScopedAcceleratorPaths::~ScopedAcceleratorPaths() { accelerator_paths = previous_; }

int64_t TokensPerHeadGroup(const torch::Device& device, int64_t bytes_per_token_head) {
  if (device.is_cpu()) return kTokensPerHeadGroup;
  // A quarter of the free memory when first asked, per device.
  static absl::Mutex mu;
  static auto* const budgets = new std::map<std::pair<int, int>, int64_t>;
  const c10::DeviceIndex index =
      device.has_index() ? device.index() : at::accelerator::getDeviceIndex();
  int64_t budget = 0;
  {
    absl::MutexLock lock(&mu);
    auto [it, added] = budgets->try_emplace({static_cast<int>(device.type()), index}, 0);
    if (added) {
      it->second = static_cast<int64_t>(at::accelerator::getMemoryInfo(index).first) / 4;
    }
    budget = it->second;
  }
  return std::max<int64_t>(1, budget / std::max<int64_t>(1, bytes_per_token_head));
}

const torch::Tensor& StateOn(torch::Tensor& state, const torch::Device& device) {
  if (state.defined() && state.device() != device) state = state.to(device);
  return state;
}

absl::StatusOr<int64_t> ReadMinLenEfficient(OptionReader& reader, int64_t default_value) {
  return reader.Int("min_len_efficient", default_value, 0,
                    std::numeric_limits<int64_t>::max());
}

uint64_t MixSeed(uint64_t seed, int64_t layer, int64_t head, uint64_t stream) {
  auto splitmix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  uint64_t h = splitmix(seed);
  h = splitmix(h ^ static_cast<uint64_t>(layer));
  h = splitmix(h ^ static_cast<uint64_t>(head));
  return splitmix(h ^ stream);
}

torch::Tensor SeededNormal(const AttentionSpec& spec, uint64_t stream,
                           torch::IntArrayRef per_head_shape) {
  std::vector<torch::Tensor> heads;
  heads.reserve(spec.num_heads);
  for (int64_t h = 0; h < spec.num_heads; ++h) {
    at::Generator gen =
        at::make_generator<at::CPUGeneratorImpl>(MixSeed(spec.seed, spec.layer, h, stream));
    heads.push_back(torch::randn(per_head_shape, gen, torch::TensorOptions().dtype(torch::kFloat)));
  }
  return torch::stack(heads).to(spec.device);
}

}  // namespace longenc::attention::internal
