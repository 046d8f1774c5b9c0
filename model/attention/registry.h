// The attention registry: maps a variant name ("full", "iclustered", ...) to a factory. Each
// variant file registers itself at static-initialisation time with LONGENC_REGISTER_ATTENTION,
// so adding a variant is one new file plus one line in CMakeLists.txt. Nothing references the
// variants by symbol: link `longenc_attention_whole` (WHOLE_ARCHIVE), not `longenc_attention`.
//
// Ownership: Create() hands the caller a fresh, exclusively owned Attention.
// Thread-safety: Register/Create/Names are safe to call concurrently (one mutex).
#ifndef LONGENC_MODEL_ATTENTION_REGISTRY_H_
#define LONGENC_MODEL_ATTENTION_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "model/attention/attention.h"
#include "model/attention/options.h"

namespace longenc::attention {

using Factory = absl::StatusOr<std::unique_ptr<Attention>> (*)(const AttentionSpec& spec);

class Registry {
 public:
  // Function-local static: safe to use from other static initialisers.
  static Registry& Global();

  // AlreadyExists if `name` is taken; InvalidArgument for an empty name or null factory.
  absl::Status Register(std::string name, Factory factory);
  // InvalidArgument listing Names() if `name` is unknown; otherwise what the factory returns
  // (LibTorch exceptions thrown by a factory become Internal).
  absl::StatusOr<std::unique_ptr<Attention>> Create(std::string_view name,
                                                    const AttentionSpec& spec) const;
  std::vector<std::string> Names() const;  // sorted

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, Factory, std::less<>> factories_ ABSL_GUARDED_BY(mu_);
};

namespace internal {
// Registers at construction; a duplicate name is a programmer error and aborts with a message.
struct Registrar {
  Registrar(const char* name, Factory factory);
};
}  // namespace internal

}  // namespace longenc::attention

#define LONGENC_REGISTER_ATTENTION(name, factory)                                         \
  static const ::longenc::attention::internal::Registrar LONGENC_CONCAT_(                 \
      longenc_attention_registrar_, __LINE__)(name, factory)

#endif  // LONGENC_MODEL_ATTENTION_REGISTRY_H_
