// Writers of embeddings for `longenc embed --format json|jsonl|npy`. Pure functions over a
// std::ostream; thread-compatible.
#ifndef LONGENC_CLIENT_OUTPUT_H_
#define LONGENC_CLIENT_OUTPUT_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "longenc/v1/encoder.pb.h"

namespace longenc::client {

// json: one array of {"id","embedding","num_tokens","truncated"}; jsonl: one such object a
// line (the same lines longenc-encode writes); npy: a float32 [N, dim] NumPy array (version 1.0
// header), rows in input order, nothing else.
absl::Status WriteEmbeddings(const std::vector<longenc::v1::Embedding>& embeddings,
                             const std::string& format, std::ostream& out);

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_OUTPUT_H_
