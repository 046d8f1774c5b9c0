// Micro benchmark of the attention variants against exact attention: wall time, tokens/s,
// peak RSS growth and fidelity (relative error, mean row cosine vs "full") for a range of
// sequence lengths, one Forward of B = 1, H heads, D head dim per point.
//
//   build-attn/bin/attention_bench [--n=512,1024,...] [--variants=full,iclustered,...]
//       [--heads=12] [--dim=32] [--threads=2] [--reps=2] [--qkv=/tmp/qkv_l2]
//       [--options=variant:k=v;k=v ...]
//
// --qkv reads real activations written by bench/attention_dump_qkv.py (float32 [3, H, N, D]);
// each N uses its first N tokens. Without it inputs are N(0, 1) (fidelity is then only a
// sanity number). Approximate variants run with min_len_efficient=0 so the efficient path is
// what is measured. Peak RSS growth is the kernel's high-water mark (reset through
// /proc/self/clear_refs before each run) minus the RSS before it. Prints a markdown table.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/process_memory.h"
#include "model/attention/options.h"
#include "model/attention/registry.h"

namespace {

using longenc::attention::AttentionSpec;
using longenc::attention::Registry;

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// VmRSS, or VmHWM with `peak`, in MiB; 0 where /proc is missing.
double ResidentMb(bool peak) {
  absl::StatusOr<longenc::ProcessMemory> memory = longenc::ReadProcessMemory();
  if (!memory.ok()) return 0;
  return (peak ? memory->peak_resident_bytes : memory->resident_bytes) / 1048576.0;
}

struct Measurement {
  double seconds = 0;
  double peak_mb = 0;
  torch::Tensor out;
};

Measurement Run(longenc::attention::Attention& attention, const torch::Tensor& q,
                const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& valid,
                int reps) {
  Measurement m;
  m.seconds = 1e30;
  for (int r = 0; r < reps; ++r) {
    m.out = torch::Tensor();
    longenc::ResetPeakResident();
    const double before_mb = ResidentMb(/*peak=*/false);
    const auto start = std::chrono::steady_clock::now();
    torch::Tensor out = attention.Forward(q, k, v, valid);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    m.peak_mb = std::max(m.peak_mb, ResidentMb(/*peak=*/true) - before_mb);
    m.seconds = std::min(m.seconds, s);
    m.out = out;
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags = {
      {"n", "512,1024,2048,4096,8192,16384,32768"},
      {"variants", "full,clustered,iclustered,yoso,cast"},
      {"heads", "12"}, {"dim", "32"}, {"threads", "2"}, {"reps", "2"}, {"qkv", ""}};
  std::map<std::string, std::map<std::string, std::string>> variant_options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.find('=') == std::string::npos) {
      std::fprintf(stderr, "bad argument %s (want --key=value)\n", arg.c_str());
      return 2;
    }
    const std::string key = arg.substr(2, arg.find('=') - 2), value = arg.substr(arg.find('=') + 1);
    if (key == "options") {  // variant:k=v;k=v
      const size_t colon = value.find(':');
      std::string kv = value.substr(colon + 1);
      for (char& c : kv) if (c == ';') c = ',';
      auto parsed = longenc::attention::ParseAttentionOptions(kv);
      if (colon == std::string::npos || !parsed.ok()) {
        std::fprintf(stderr, "bad --options %s\n", value.c_str());
        return 2;
      }
      variant_options[value.substr(0, colon)] = *parsed;
      continue;
    }
    if (flags.count(key) == 0) {
      std::fprintf(stderr, "unknown flag --%s\n", key.c_str());
      return 2;
    }
    flags[key] = value;
  }
  const int64_t heads = std::stoll(flags["heads"]), dim = std::stoll(flags["dim"]);
  const int reps = std::stoi(flags["reps"]);
  at::set_num_threads(std::stoi(flags["threads"]));
  at::set_num_interop_threads(1);
  torch::InferenceMode guard;

  torch::Tensor real;  // [3, H, N, D]
  if (!flags["qkv"].empty()) {
    std::ifstream meta(flags["qkv"] + ".json");
    std::string json((std::istreambuf_iterator<char>(meta)), std::istreambuf_iterator<char>());
    const size_t at = json.find("\"tokens\": ");
    const int64_t tokens = std::stoll(json.substr(at + 10));
    real = torch::from_file(flags["qkv"] + ".bin", false, 3 * heads * tokens * dim, torch::kFloat)
               .view({3, heads, tokens, dim});
    std::printf("real activations: %s (%lld tokens)\n", flags["qkv"].c_str(),
                static_cast<long long>(tokens));
  }

  std::printf("| variant | N | seconds | tokens/s | peak RSS growth MB | rel. error | mean cosine |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const std::string& n_text : Split(flags["n"], ',')) {
    const int64_t n = std::stoll(n_text);
    torch::Tensor q, k, v;
    if (real.defined()) {
      if (n > real.size(2)) continue;
      using torch::indexing::Slice;
      q = real[0].index({Slice(), Slice(0, n)}).unsqueeze(0).contiguous();
      k = real[1].index({Slice(), Slice(0, n)}).unsqueeze(0).contiguous();
      v = real[2].index({Slice(), Slice(0, n)}).unsqueeze(0).contiguous();
    } else {
      torch::manual_seed(n);
      q = torch::randn({1, heads, n, dim});
      k = torch::randn({1, heads, n, dim});
      v = torch::randn({1, heads, n, dim});
    }
    const torch::Tensor valid = torch::ones({1, n}, torch::kBool);
    torch::Tensor exact;
    for (const std::string& name : Split(flags["variants"], ',')) {
      AttentionSpec spec;
      spec.num_heads = heads;
      spec.head_dim = dim;
      spec.options = variant_options[name];
      if (name != "full" && spec.options.count("min_len_efficient") == 0) {
        spec.options["min_len_efficient"] = "0";
      }
      auto attention = Registry::Global().Create(name, spec);
      if (!attention.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), attention.status().ToString().c_str());
        return 1;
      }
      const Measurement m = Run(**attention, q, k, v, valid, n <= 4096 ? reps : 1);
      if (name == "full") exact = m.out;
      double rel = NAN, cosine = NAN;
      if (exact.defined()) {
        rel = ((m.out - exact).norm() / exact.norm()).item<double>();
        cosine = torch::cosine_similarity(m.out, exact, -1).mean().item<double>();
      }
      std::printf("| %s | %lld | %.3f | %.0f | %.0f | %.4f | %.4f |\n", name.c_str(),
                  static_cast<long long>(n), m.seconds, n / m.seconds, m.peak_mb, rel, cosine);
      std::fflush(stdout);
    }
  }
  return 0;
}
