// gpu_check_bench: the measurements of scripts/gpu_check.sh (issue 16 item 7), one process per
// run. For each dtype, one backend on --device; for each length, one real-text document
// (--ids: {"<N>": [token ids]}, from bench/corpus.py), encoded with exact attention and with
// every variant: tokens/s (median of timed passes after a warm-up; a pass ends when the
// embeddings are on the host, so the device's queue is drained), the batch's peak memory (the
// CUDA allocator's on a GPU; on CPU the process's peak RSS since start) and the cosine of the
// embedding to
// fp32 exact attention on the same device (fidelity). Parity: fp32 exact on --device against
// fp32 exact on CPU, which tests/python/test_embedding_parity.py holds to sentence-transformers.
//
//   gpu_check_bench --device=cuda:0 --ids=ids.json --dtypes=float32,bfloat16,float16
//       --lengths=512,2048,8192,16384,65536 [--exact_max=65536] [--max_seconds=360]
//
// Prints markdown tables; --out writes one JSON object per measurement. Exit 1 when a required
// step fails (the backend does not load in fp32, an embedding is not finite, parity below 0.9999).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "model/backend.h"
#include "model/torch_backend.h"

ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N");
ABSL_FLAG(std::string, ids, "", "JSON file {\"<tokens>\": [token ids], ...}");
ABSL_FLAG(std::string, dtypes, "float32", "comma-separated: float32, bfloat16, float16");
ABSL_FLAG(std::string, lengths, "512,2048", "comma-separated document lengths (keys of --ids)");
ABSL_FLAG(std::string, methods, "full,clustered,iclustered,yoso,cast", "attention variants");
ABSL_FLAG(int64_t, exact_max, 16384, "longest document exact attention runs");
ABSL_FLAG(int64_t, parity_max, 2048, "longest document of the CPU parity check");
ABSL_FLAG(bool, warmup, true, "one untimed pass before each measurement");
ABSL_FLAG(double, min_seconds, 0.5, "time each measurement at least this long (after warm-up)");
ABSL_FLAG(int, max_reps, 5, "at most this many timed passes per measurement");
ABSL_FLAG(double, max_seconds, 360, "skip the remaining measurements after this much time");
ABSL_FLAG(int, threads, 0, "CPU intra-op threads (0 = all cores)");
ABSL_FLAG(std::string, out, "", "JSON lines, one per measurement");

namespace {

using longenc::model::Backend;
using longenc::model::BackendOptions;
using longenc::model::Batch;
using longenc::model::BatchResult;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double Cosine(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.empty() || a.size() != b.size()) return std::nan("");
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += double{a[i]} * b[i];
    na += double{a[i]} * a[i];
    nb += double{b[i]} * b[i];
  }
  return dot / std::sqrt(na * nb);
}

bool Finite(const std::vector<float>& v) {
  return !v.empty() && std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

struct Measurement {
  bool ok = false;
  std::string error;
  double seconds = 0;  // median of the timed passes
  int reps = 0;
  int64_t peak_bytes = 0;
  std::vector<float> embedding;
};

Measurement Measure(Backend& backend, const std::vector<int32_t>& ids, const std::string& method) {
  Measurement m;
  Batch batch;
  batch.settings.attention = method;
  batch.Add(ids);
  if (absl::GetFlag(FLAGS_warmup)) {
    auto warm = backend.Embed(batch);
    if (!warm.ok()) {
      m.error = warm.status().ToString();
      return m;
    }
  }
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.empty() || (Seconds(start) < absl::GetFlag(FLAGS_min_seconds) &&
                           static_cast<int>(times.size()) < absl::GetFlag(FLAGS_max_reps))) {
    const auto t0 = Clock::now();
    auto result = backend.Embed(batch);
    times.push_back(Seconds(t0));
    if (!result.ok()) {
      m.error = result.status().ToString();
      return m;
    }
    m.peak_bytes = std::max(m.peak_bytes, result->peak_memory_bytes);
    m.embedding = std::move(result->embeddings);
  }
  std::sort(times.begin(), times.end());
  m.seconds = times[times.size() / 2];
  m.reps = static_cast<int>(times.size());
  m.ok = Finite(m.embedding);
  if (!m.ok) m.error = "embedding not finite";
  return m;
}

std::unique_ptr<Backend> Load(const std::string& device, const std::string& dtype,
                              std::string* error) {
  BackendOptions options;
  options.model_dir = longenc::model::DefaultModelDir();
  options.device = device;
  options.threads = absl::GetFlag(FLAGS_threads);
  options.dtype = dtype;
  // Exact attention is the fidelity reference and a row of its own up to --exact_max.
  options.max_exact_tokens = std::max(options.max_exact_tokens, absl::GetFlag(FLAGS_exact_max));
  auto backend = longenc::model::CreateTorchBackend(options);
  if (!backend.ok()) {
    *error = backend.status().ToString();
    return nullptr;
  }
  return std::move(*backend);
}

std::vector<std::string> Split(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipEmpty());
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string device = absl::GetFlag(FLAGS_device);
  std::map<int64_t, std::vector<int32_t>> docs;
  {
    std::ifstream in(absl::GetFlag(FLAGS_ids));
    if (!in) {
      std::fprintf(stderr, "gpu_check_bench: cannot read --ids=%s\n",
                   absl::GetFlag(FLAGS_ids).c_str());
      return 1;
    }
    const nlohmann::json ids = nlohmann::json::parse(in);
    for (const std::string& text : Split(absl::GetFlag(FLAGS_lengths))) {
      int64_t n = 0;
      if (!absl::SimpleAtoi(text, &n) || !ids.contains(text)) {
        std::fprintf(stderr, "gpu_check_bench: no document of %s tokens in --ids\n", text.c_str());
        return 1;
      }
      docs[n] = ids[text].get<std::vector<int32_t>>();
    }
  }
  std::ofstream out;
  if (!absl::GetFlag(FLAGS_out).empty()) out.open(absl::GetFlag(FLAGS_out));
  const auto run_start = Clock::now();
  int status = 0;

  // fp32 exact attention on the device: the reference of every fidelity figure.
  std::map<int64_t, std::vector<float>> reference;

  for (const std::string& dtype : Split(absl::GetFlag(FLAGS_dtypes))) {
    std::string error;
    const auto load_start = Clock::now();
    std::unique_ptr<Backend> backend = Load(device, dtype, &error);
    if (backend == nullptr) {
      std::printf("\n### %s on %s: not run: %s\n", dtype.c_str(), device.c_str(), error.c_str());
      if (dtype == "float32") status = 1;
      continue;
    }
    std::printf("\n### %s on %s (model loaded and warmed up in %.1f s)\n\n", dtype.c_str(),
                device.c_str(), Seconds(load_start));
    std::printf("| tokens | method | tokens/s | s/doc | peak memory MiB | cosine to fp32 exact |\n");
    std::printf("|---:|---|---:|---:|---:|---:|\n");
    for (const auto& [n, ids] : docs) {
      for (const std::string& method : Split(absl::GetFlag(FLAGS_methods))) {
        if (method == "full" && n > absl::GetFlag(FLAGS_exact_max)) continue;
        if (Seconds(run_start) > absl::GetFlag(FLAGS_max_seconds)) {
          std::printf("| %lld | %s | skipped: --max_seconds reached | | | |\n",
                      static_cast<long long>(n), method.c_str());
          continue;
        }
        const Measurement m = Measure(*backend, ids, method);
        if (!m.ok) {
          std::printf("| %lld | %s | error: %s | | | |\n", static_cast<long long>(n),
                      method.c_str(), m.error.c_str());
          status = 1;
          continue;
        }
        if (dtype == "float32" && method == "full") reference[n] = m.embedding;
        const double fidelity =
            reference.count(n) > 0 ? Cosine(m.embedding, reference[n]) : std::nan("");
        char cosine[32] = "n/a";
        if (!std::isnan(fidelity)) std::snprintf(cosine, sizeof(cosine), "%.6f", fidelity);
        std::printf("| %lld | %s | %.0f | %.4f | %.1f | %s |\n", static_cast<long long>(n),
                    method.c_str(), static_cast<double>(n) / m.seconds, m.seconds,
                    static_cast<double>(m.peak_bytes) / (1 << 20), cosine);
        std::fflush(stdout);
        if (out.is_open()) {
          nlohmann::json row = {{"device", device}, {"dtype", dtype}, {"tokens", n},
                                {"method", method}, {"seconds", m.seconds}, {"reps", m.reps},
                                {"tokens_per_second", static_cast<double>(n) / m.seconds},
                                {"peak_memory_bytes", m.peak_bytes}};
          if (!std::isnan(fidelity)) row["cosine_to_fp32_exact"] = fidelity;
          out << row.dump() << "\n";
        }
      }
    }
  }

  // Parity: fp32 exact on the device against fp32 exact on CPU.
  std::printf("\n### parity: %s fp32 exact vs CPU fp32 exact\n\n", device.c_str());
  if (device == "cpu") {
    std::printf("(the device is the CPU: parity with sentence-transformers is "
                "tests/python/test_embedding_parity.py)\n");
  } else {
    std::string error;
    std::unique_ptr<Backend> cpu = Load("cpu", "float32", &error);
    if (cpu == nullptr) {
      std::printf("CPU backend: %s\n", error.c_str());
      return 1;
    }
    std::printf("| tokens | cosine |\n|---:|---:|\n");
    for (const auto& [n, ids] : docs) {
      if (n > absl::GetFlag(FLAGS_parity_max) || reference.count(n) == 0) continue;
      Batch batch;
      batch.Add(ids);
      batch.settings.attention = "full";
      auto result = cpu->Embed(batch);
      const double cosine = result.ok() ? Cosine(result->embeddings, reference[n]) : -2;
      std::printf("| %lld | %.7f |\n", static_cast<long long>(n), cosine);
      if (!(cosine >= 0.9999)) status = 1;
      if (out.is_open()) {
        out << nlohmann::json{{"parity_tokens", n}, {"cosine_device_vs_cpu", cosine}}.dump()
            << "\n";
      }
    }
  }
  std::printf("\ngpu_check_bench: %s in %.0f s\n", status == 0 ? "OK" : "FAILED",
              Seconds(run_start));
  return status;
}
