// How a document longer than the model's position table (512 for BERT) is encoded.
//
//   chunk        windows of the table's size, exact attention within, pooled over windows
//                (what users do by hand today; the baseline)
//   recurrent    position id = i mod P
//   grouped      position id = i / s with s = ceil(n / P) (neighbours share a position)
//   interpolate  the table linearly interpolated to n positions
//   native       the model's own positions: RoPE models extend past their trained length as
//                their config says (dynamic NTK, YaRN, or plain); learned tables refuse longer
//                documents. The default of RoPE models.
// Any mode but chunk takes the suffix ",logscale": queries are scaled by log(n)/log(P) so
// the softmax keeps its sharpness over n keys. Documents of at most P tokens are encoded
// identically by every mode.
#ifndef LONGENC_MODEL_POSITIONS_POSITIONS_H_
#define LONGENC_MODEL_POSITIONS_POSITIONS_H_

#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace longenc::positions {

enum class Mode { kChunk, kRecurrent, kGrouped, kInterpolate, kNative };

struct PositionScheme {
  Mode mode = Mode::kInterpolate;
  bool log_scale = false;
};

// Parses "interpolate", "grouped,logscale", ...; InvalidArgument lists the valid names.
absl::StatusOr<PositionScheme> ParsePositionScheme(const std::string& text);
std::string ToString(const PositionScheme& scheme);
// Every accepted spelling, for --help and GetInfo.
std::vector<std::string> PositionSchemeNames();

// table: [P, Hd]. Returns [n, Hd], the embedding of each position of an n-token document
// (one-pass modes; n <= P returns table[:n] for every mode).
torch::Tensor PositionEmbeddings(const PositionScheme& scheme, const torch::Tensor& table,
                                 int64_t n);
// Factor applied to queries for an n-token document (1 unless log_scale and n > P).
double QueryScale(const PositionScheme& scheme, int64_t n, int64_t table_size);

}  // namespace longenc::positions

#endif  // LONGENC_MODEL_POSITIONS_POSITIONS_H_
