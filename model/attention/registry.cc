#include "model/attention/registry.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace longenc::attention {

Registry& Registry::Global() {
  static Registry* registry = new Registry();  // never destroyed: used by static registrars
  return *registry;
}

absl::Status Registry::Register(std::string name, Factory factory) {
  if (name.empty() || factory == nullptr) {
    return absl::InvalidArgumentError("attention registry: empty name or null factory");
  }
  absl::MutexLock lock(&mu_);
  if (factories_.count(name) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("attention variant '", name, "' is already registered"));
  }
  factories_.emplace(std::move(name), factory);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Attention>> Registry::Create(std::string_view name,
                                                            const AttentionSpec& spec) const {
  Factory factory = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = factories_.find(name);
    if (it != factories_.end()) factory = it->second;
  }
  if (factory == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown attention '", std::string(name),
                                                   "'; known: ", absl::StrJoin(Names(), ", ")));
  }
  try {
    return factory(spec);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("creating attention '", std::string(name), "': ", e.what()));
  }
}

std::vector<std::string> Registry::Names() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  names.reserve(factories_.size());
  for (const auto& [name, factory] : factories_) names.push_back(name);
  return names;
}

namespace internal {
Registrar::Registrar(const char* name, Factory factory) {
  const absl::Status status = Registry::Global().Register(name, factory);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    std::abort();
  }
}
}  // namespace internal

}  // namespace longenc::attention
