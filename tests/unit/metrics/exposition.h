// Test helper: parses Prometheus text exposition (what GET /metrics returns) into samples, so
// tests assert on values the way a scraper sees them rather than on prometheus-cpp internals.
// Header-only; not thread-safe (plain values).
#ifndef LONGENC_TESTS_UNIT_METRICS_EXPOSITION_H_
#define LONGENC_TESTS_UNIT_METRICS_EXPOSITION_H_

#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace longenc::metrics::testing {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family name -> "counter", "gauge", ...
  std::map<std::string, std::string> help;   // family name -> help text

  // The value of the one sample named `name` whose labels are exactly `labels`.
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
  // Every sample named `name`.
  std::vector<Sample> All(const std::string& name) const {
    std::vector<Sample> out;
    for (const Sample& s : samples) {
      if (s.name == name) out.push_back(s);
    }
    return out;
  }
};

// Parses `name{a="x",b="y"} 1.5` lines and `# HELP` / `# TYPE` comments. Label values in our
// output never contain escaped quotes, which keeps this small; a malformed line is returned
// in `error`.
inline Exposition ParseExposition(const std::string& text, std::string* error = nullptr) {
  Exposition out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0 || line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t space = rest.find(' ');
      auto& map = line[2] == 'T' ? out.types : out.help;
      map[rest.substr(0, space)] = space == std::string::npos ? "" : rest.substr(space + 1);
      continue;
    }
    if (line[0] == '#') continue;
    Sample sample;
    size_t pos = line.find_first_of("{ ");
    sample.name = line.substr(0, pos);
    if (pos != std::string::npos && line[pos] == '{') {
      const size_t close = line.find('}', pos);
      std::string body = line.substr(pos + 1, close - pos - 1);
      size_t at = 0;
      while (at < body.size()) {
        const size_t eq = body.find("=\"", at);
        const size_t end = body.find('"', eq + 2);
        if (eq == std::string::npos || end == std::string::npos) {
          if (error) *error = "bad labels: " + line;
          return out;
        }
        sample.labels[body.substr(at, eq - at)] = body.substr(eq + 2, end - eq - 2);
        at = end + 1;
        if (at < body.size() && body[at] == ',') ++at;
      }
      pos = close + 1;
    }
    const std::string value = line.substr(line.find_first_not_of(' ', pos));
    char* parse_end = nullptr;
    sample.value = value == "+Inf" ? 1.0 / 0.0 : std::strtod(value.c_str(), &parse_end);
    out.samples.push_back(std::move(sample));
  }
  return out;
}

}  // namespace longenc::metrics::testing

#endif  // LONGENC_TESTS_UNIT_METRICS_EXPOSITION_H_
