#include "model/attention/cast.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "model/attention/attention_ops.h"
#include "model/device.h"
#include "model/encoder/safetensors.h"

namespace longenc::attention::internal {
namespace {

using torch::indexing::Slice;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Rows of x [B, H, N, X] for token ids idx [B, H, ...] -> [B, H, ..., X].
torch::Tensor GatherTokens(const torch::Tensor& x, const torch::Tensor& idx) {
  const auto b = x.size(0), h = x.size(1), width = x.size(-1);
  torch::Tensor flat = idx.reshape({b, h, -1});
  std::vector<int64_t> shape(idx.sizes().begin(), idx.sizes().end());
  shape.push_back(width);
  return x.gather(2, flat.unsqueeze(-1).expand({b, h, flat.size(2), width})).view(shape);
}

}  // namespace

torch::Tensor CastAffinity(const torch::Tensor& q, const torch::Tensor& k,
                           const torch::Tensor& key_valid, const torch::Tensor& surrogates) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const torch::Tensor s_t = surrogates.transpose(-1, -2);  // [H, D, N_c]
  return (torch::matmul(q + k, s_t) * scale)
      .masked_fill(key_valid.logical_not().unsqueeze(1).unsqueeze(-1), -kInf);
}

CastClusters CastTopK(const torch::Tensor& affinity, int64_t kappa) {
  const int64_t kk = std::min(kappa, affinity.size(2));
  auto [values, members] = torch::topk(affinity.transpose(-1, -2), kk, -1);  // [B,H,N_c,kk]
  return {members, torch::isfinite(values)};
}

CastClusters CastSingleAssignment(const torch::Tensor& affinity, int64_t kappa,
                                  int64_t max_rounds, int64_t stop_lag) {
  const int64_t b = affinity.size(0), h = affinity.size(1), n = affinity.size(2),
                nc = affinity.size(3);
  const auto long_opts = affinity.options().dtype(torch::kLong);
  const torch::Tensor valid = torch::isfinite(affinity).any(-1);  // [B,H,N]
  const torch::Tensor positions = torch::arange(n, long_opts).expand({b, h, n});
  torch::Tensor holder = torch::full({b, h, n}, -1, long_opts);   // cluster or -1
  torch::Tensor refused = torch::zeros_like(affinity, affinity.options().dtype(torch::kBool));
  torch::Tensor rank = torch::zeros({b, h, n}, long_opts);
  // A round without proposals changes nothing (the holders keep their ranks, the cut-offs are
  // the same), so the loop may stop a few rounds late: on an accelerator the host learns that
  // nobody proposes anymore without waiting for each round (model/device.h RoundStopper).
  const int64_t lag = stop_lag >= 0           ? stop_lag
                      : HostReadsAreFree(affinity) ? 0
                                                   : model::RoundStopper::kDefaultLag;
  model::RoundStopper stopper(lag, /*emulate_lag=*/affinity.is_cpu() && lag > 0);
  for (int64_t round = 0; round < max_rounds; ++round) {
    const auto [best_value, best] = affinity.masked_fill(refused, -kInf).max(-1);
    const torch::Tensor proposes = holder.lt(0) & valid & torch::isfinite(best_value);
    if (stopper.Stop(proposes.any())) break;
    // Candidates: current holders keep their place in the competition, proposers join.
    const torch::Tensor cand = torch::where(proposes, best, holder);          // -1 = none
    const torch::Tensor in = cand.ge(0);
    const torch::Tensor score =
        affinity.gather(-1, cand.clamp_min(0).unsqueeze(-1)).squeeze(-1).masked_fill(
            in.logical_not(), -kInf);
    // Order by (cluster asc, score desc, position asc): two stable sorts.
    const torch::Tensor by_score =
        std::get<1>(torch::sort(score, /*stable=*/true, /*dim=*/-1, /*descending=*/true));
    const torch::Tensor cluster_key = cand.masked_fill(in.logical_not(), nc).gather(-1, by_score);
    const auto [sorted_cluster, by_cluster] =
        torch::sort(cluster_key, /*stable=*/true, /*dim=*/-1, /*descending=*/false);
    const torch::Tensor order = by_score.gather(-1, by_cluster);               // token ids
    const torch::Tensor counts =
        torch::zeros({b, h, nc + 1}, long_opts).scatter_add_(-1, sorted_cluster, torch::ones_like(sorted_cluster));
    const torch::Tensor starts = counts.cumsum(-1) - counts;                   // exclusive
    const torch::Tensor sorted_rank = positions - starts.gather(-1, sorted_cluster);
    rank = torch::empty_like(rank).scatter_(-1, order, sorted_rank);
    const torch::Tensor keep = in & rank.lt(kappa);
    const torch::Tensor bumped = in & keep.logical_not();
    refused = refused.logical_or(torch::zeros_like(refused).scatter_(
        -1, cand.clamp_min(0).unsqueeze(-1), bumped.unsqueeze(-1)));
    holder = torch::where(keep, cand, torch::full_like(cand, -1));
    // A full cluster only ever swaps a holder for a better one, so its lowest holder score
    // never drops: tokens below it can be refused now. Without this, tokens that fit nowhere
    // (N > N_c·kappa) would need one round per cluster to learn it.
    const torch::Tensor holder_slot = holder.masked_fill(holder.lt(0), nc);
    const torch::Tensor holder_score =
        affinity.gather(-1, holder.clamp_min(0).unsqueeze(-1)).squeeze(-1).masked_fill(
            holder.lt(0), kInf);
    const torch::Tensor lowest =
        torch::full({b, h, nc + 1}, kInf, affinity.options())
            .scatter_reduce_(-1, holder_slot, holder_score, "amin", /*include_self=*/true)
            .index({Slice(), Slice(), Slice(0, nc)});
    const torch::Tensor filled =
        torch::zeros({b, h, nc + 1}, long_opts)
            .scatter_add_(-1, holder_slot, torch::ones_like(holder_slot))
            .index({Slice(), Slice(), Slice(0, nc)})
            .ge(kappa);
    const torch::Tensor cutoff = lowest.masked_fill(filled.logical_not(), -kInf);  // [B,H,N_c]
    refused = refused.logical_or(affinity.lt(cutoff.unsqueeze(2)));
  }
  // Slot table: slot (c, rank) <- token; unmatched tokens go to a spare slot that is cut off.
  const torch::Tensor matched = holder.ge(0);
  const torch::Tensor slot = torch::where(matched, holder * kappa + rank.clamp_max(kappa - 1),
                                          torch::full_like(holder, nc * kappa));
  torch::Tensor members = torch::zeros({b, h, nc * kappa + 1}, long_opts)
                              .scatter_(-1, slot, positions.contiguous());
  torch::Tensor slot_ok = torch::zeros({b, h, nc * kappa + 1}, long_opts)
                              .scatter_(-1, slot, matched.to(torch::kLong));
  const Slice real(0, nc * kappa);
  return {members.index({Slice(), Slice(), real}).view({b, h, nc, kappa}),
          slot_ok.index({Slice(), Slice(), real}).view({b, h, nc, kappa}).to(torch::kBool)};
}

torch::Tensor CastCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& key_valid, const torch::Tensor& surrogates,
                       const CastClusters& clusters, CastMix mix, torch::Tensor* mixing) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3);
  const int64_t nc = clusters.members.size(2), kappa = clusters.members.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const torch::Tensor s_t = surrogates.transpose(-1, -2);            // [H, D, N_c]
  const torch::Tensor aq = torch::matmul(q, s_t) * scale;            // [B,H,N,N_c]
  const torch::Tensor ak = torch::matmul(k, s_t) * scale;
  const torch::Tensor& members = clusters.members;                   // [B,H,N_c,κ]
  const torch::Tensor& ok = clusters.slot_ok;
  const torch::Tensor qg = GatherTokens(q, members);                 // [B,H,N_c,κ,D]
  const torch::Tensor kg = GatherTokens(k, members);
  const torch::Tensor vg = GatherTokens(v, members);

  // Summaries R_c = Σ_{j∈c} softmax_j(A_k[j, c]) v_j; empty clusters are masked out below.
  const torch::Tensor ak_members =
      ak.transpose(-1, -2).gather(-1, members).masked_fill(ok.logical_not(), -kInf);  // [B,H,N_c,κ]
  const torch::Tensor nonempty = ok.any(-1);                                         // [B,H,N_c]
  const torch::Tensor summary_w =
      torch::softmax(ak_members.masked_fill(nonempty.logical_not().unsqueeze(-1), 0.0), -1);
  const torch::Tensor summaries = torch::matmul(summary_w.unsqueeze(-2), vg).squeeze(-2);  // [B,H,N_c,D]

  // Intra-cluster logits, padded/empty key slots masked.
  const torch::Tensor intra = (torch::matmul(qg, kg.transpose(-1, -2)) * scale)
                                  .masked_fill(ok.logical_not().unsqueeze(-2), -kInf);  // [B,H,N_c,κ,κ]
  // Summary logits of the other non-empty clusters.
  const torch::Tensor own = torch::eye(nc, q.options()).to(torch::kBool).view({1, 1, nc, 1, nc});
  const torch::Tensor summary_off =
      own.logical_or(nonempty.logical_not().view({b, h, 1, 1, nc}));
  const torch::Tensor inter = GatherTokens(aq, members).masked_fill(summary_off, -kInf);  // [B,H,N_c,κ,N_c]
  const torch::Tensor summaries_b = summaries.unsqueeze(2);                                 // [B,H,1,N_c,D]

  torch::Tensor slot_out;  // [B,H,N_c,κ,D]
  if (mix == CastMix::kJoint) {
    const torch::Tensor p = torch::softmax(torch::cat({intra, inter}, -1), -1);
    const Slice intra_part(0, kappa), inter_part(kappa, kappa + nc);
    slot_out = torch::matmul(p.index({"...", intra_part}), vg) +
               torch::matmul(p.index({"...", inter_part}), summaries_b);
    if (mixing != nullptr) *mixing = p.masked_fill(ok.logical_not().unsqueeze(-1), 0.0);
  } else {
    const torch::Tensor has_other = torch::isfinite(inter).any(-1, /*keepdim=*/true);  // [..,κ,1]
    const torch::Tensor intra_out = torch::matmul(torch::softmax(intra, -1), vg);
    const torch::Tensor inter_out = torch::matmul(
        torch::softmax(inter.masked_fill(has_other.logical_not(), 0.0), -1), summaries_b);
    slot_out = torch::where(has_other, 0.5 * intra_out + 0.5 * inter_out, intra_out);
  }
  slot_out = slot_out.masked_fill(ok.logical_not().unsqueeze(-1), 0.0);

  // Back to tokens: mean over the clusters a token belongs to (index_put_ accumulate is
  // deterministic on CPU and CUDA).
  const auto long_opts = members.options();
  const torch::Tensor flat =
      (torch::arange(b * h, long_opts).view({b, h, 1, 1}) * n + members).reshape(-1);
  torch::Tensor sums = torch::zeros({b * h * n, d}, q.options());
  sums.index_put_({flat}, slot_out.reshape({-1, d}), /*accumulate=*/true);
  torch::Tensor counts = torch::zeros({b * h * n}, q.options());
  counts.index_put_({flat}, ok.reshape(-1).to(q.scalar_type()), /*accumulate=*/true);
  sums = sums.view({b, h, n, d});
  counts = counts.view({b, h, n, 1});
  // Tokens in no cluster: summaries only.
  const torch::Tensor unclustered_logits = aq.masked_fill(nonempty.logical_not().unsqueeze(2), -kInf);
  const torch::Tensor unclustered =
      torch::matmul(torch::softmax(unclustered_logits, -1), summaries);
  const torch::Tensor out =
      torch::where(counts.gt(0), sums / counts.clamp_min(1.0), unclustered);
  return ZeroPaddedQueries(out, key_valid);
}

std::string SurrogateTensorName(int64_t layer) {
  return absl::StrCat("layer.", layer, ".surrogates");
}

absl::StatusOr<CastSettings> ParseCastSettings(const std::map<std::string, std::string>& options) {
  OptionReader reader("cast", options);
  CastSettings settings;
  ASSIGN_OR_RETURN(settings.clusters, reader.Int("clusters", settings.clusters, 1, 1 << 14));
  ASSIGN_OR_RETURN(settings.kappa, reader.Int("kappa", settings.kappa, 1, 1 << 16));
  ASSIGN_OR_RETURN(const std::string assignment,
                   reader.Choice("assignment", "sa", {"sa", "topk"}));
  ASSIGN_OR_RETURN(const std::string mix, reader.Choice("mix", "joint", {"joint", "additive"}));
  ASSIGN_OR_RETURN(const std::string file, reader.String("surrogates", "none"));
  ASSIGN_OR_RETURN(settings.min_len_efficient, ReadMinLenEfficient(reader));
  RETURN_IF_ERROR(reader.Finish());
  settings.single_assignment = assignment == "sa";
  settings.mix = mix == "joint" ? CastMix::kJoint : CastMix::kAdditive;
  if (file != "none") settings.surrogates_file = file;
  return settings;
}

torch::Tensor CastAttend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const torch::Tensor& key_valid, const torch::Tensor& surrogates,
                         const CastSettings& settings) {
  // One document at a time: the slots kept (below) depend on its own clusters only, so a
  // document's result never depends on its batch-mates.
  if (q.size(0) > 1) {
    std::vector<torch::Tensor> rows;
    for (int64_t b = 0; b < q.size(0); ++b) {
      rows.push_back(CastAttend(q.narrow(0, b, 1), k.narrow(0, b, 1), v.narrow(0, b, 1),
                                key_valid.narrow(0, b, 1), surrogates, settings));
    }
    return torch::cat(rows, 0);
  }
  CastClusters clusters;
  {
    // The assignment is piecewise constant in the surrogates: no gradient, no graph.
    torch::NoGradGuard no_grad;
    const torch::Tensor affinity = CastAffinity(q, k, key_valid, surrogates.detach());
    const int64_t nc = surrogates.size(1);
    clusters = settings.single_assignment
                   ? CastSingleAssignment(affinity, settings.kappa, /*max_rounds=*/4 * nc + 64)
                   : CastTopK(affinity, settings.kappa);
    // Both assignments fill each cluster's slots from 0. Slots that no cluster uses only add
    // masked columns, so on CPU they are dropped: a short document no longer pays for
    // N_c·kappa² slots when its clusters are small (one layer of a 512-token document
    // 0.46 -> 0.12 s in bench/attention_bench.cc; the whole encoder 2.56 -> 1.31 s). An
    // accelerator does not read the fill back: the slots are cut to min(kappa, N) only, which
    // the shapes give (its head groups are sized for that, cast_attention.cc).
    int64_t used = std::min(clusters.members.size(3), std::max<int64_t>(1, q.size(2)));
    if (HostReadsAreFree(clusters.members)) {
      // host-sync-ok: CPU only.
      used = std::max<int64_t>(1, clusters.slot_ok.sum(-1).max().item<int64_t>());
    }
    if (used < clusters.members.size(3)) {
      clusters.members = clusters.members.narrow(3, 0, used);
      clusters.slot_ok = clusters.slot_ok.narrow(3, 0, used);
    }
  }
  return CastCore(q, k, v, key_valid, surrogates, clusters, settings.mix);
}

absl::StatusOr<torch::Tensor> LoadSurrogates(const std::string& path, int64_t layer,
                                             int64_t num_layers, int64_t num_heads,
                                             int64_t head_dim) {
  auto file = encoder::SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  const std::string name = SurrogateTensorName(layer);
  const encoder::TensorView* view = file->Find(name);
  if (view == nullptr) {
    return absl::NotFoundError(absl::StrCat("cast surrogates: ", path, " has no tensor ", name));
  }
  if (view->dtype != encoder::DType::kF32 || view->shape.size() != 3 ||
      view->shape[0] != num_heads || view->shape[2] != head_dim || view->shape[1] < 1) {
    std::string shape;
    for (int64_t d : view->shape) absl::StrAppend(&shape, shape.empty() ? "" : ", ", d);
    return absl::InvalidArgumentError(absl::StrCat(
        "cast surrogates: ", path, ": ", name, " is ", encoder::DTypeName(view->dtype), " [",
        shape, "]; this model needs F32 [", num_heads, ", clusters, ", head_dim, "]"));
  }
  // The whole file must describe this model: one tensor per layer, one cluster count.
  int64_t layers_in_file = 0;
  for (const encoder::TensorView& t : file->tensors()) {
    absl::string_view digits = t.name;
    int64_t index = -1;
    if (!absl::ConsumePrefix(&digits, "layer.") || !absl::ConsumeSuffix(&digits, ".surrogates") ||
        !absl::SimpleAtoi(digits, &index) || t.name != SurrogateTensorName(index) ||
        index < 0 || index >= num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cast surrogates: ", path, ": unexpected tensor ", t.name, "; the model has ",
          num_layers, " layers (expected ", SurrogateTensorName(0), " … ",
          SurrogateTensorName(num_layers - 1), ")"));
    }
    if (t.shape.size() != 3 || t.shape[1] != view->shape[1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cast surrogates: ", path, ": ", t.name, " and ", name,
          " disagree on the number of clusters"));
    }
    ++layers_in_file;
  }
  if (layers_in_file != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("cast surrogates: ", path, " has surrogates for ",
                                                   layers_in_file, " layers; the model has ",
                                                   num_layers));
  }
  torch::Tensor out = torch::empty({view->shape[0], view->shape[1], view->shape[2]}, torch::kFloat);
  // host-sync-ok: loading a file (model load), on the host.
  std::memcpy(out.data_ptr<float>(), view->data, static_cast<size_t>(view->nbytes));
  if (!torch::isfinite(out).all().item<bool>()) {  // host-sync-ok: CPU, at load
    return absl::InvalidArgumentError(
        absl::StrCat("cast surrogates: ", path, ": ", name, " holds NaN or infinite values"));
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> SurrogateFileOptions(const std::string& path) {
  auto file = encoder::SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  const auto it = file->metadata().find("cast_options");
  if (it == file->metadata().end()) return std::map<std::string, std::string>{};
  auto options = ParseAttentionOptions(it->second);
  if (!options.ok() || options->count("surrogates") > 0) {
    return absl::InvalidArgumentError(absl::StrCat("cast surrogates: ", path,
                                                   ": malformed cast_options metadata \"",
                                                   it->second, "\""));
  }
  return *options;
}

absl::Status SaveSurrogates(const std::string& path, const std::vector<torch::Tensor>& layers,
                            const std::map<std::string, std::string>& metadata) {
  std::vector<encoder::TensorToWrite> tensors;
  for (size_t layer = 0; layer < layers.size(); ++layer) {
    // host-sync-ok: writing a file (calibration), not a forward.
    const torch::Tensor s = layers[layer].detach().to(torch::kCPU, torch::kFloat).contiguous();
    if (s.dim() != 3) {
      return absl::InvalidArgumentError(absl::StrCat("cast surrogates for layer ", layer,
                                                     " must be [heads, clusters, head_dim]"));
    }
    std::string bytes(static_cast<size_t>(s.numel()) * sizeof(float), '\0');
    std::memcpy(bytes.data(), s.data_ptr<float>(), bytes.size());  // host-sync-ok: CPU copy
    tensors.push_back({SurrogateTensorName(static_cast<int64_t>(layer)), encoder::DType::kF32,
                       {s.size(0), s.size(1), s.size(2)}, std::move(bytes)});
  }
  return encoder::WriteSafetensors(path, tensors, metadata);
}

}  // namespace longenc::attention::internal
