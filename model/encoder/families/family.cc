#include "model/encoder/families/family.h"

#include "absl/strings/str_join.h"

namespace longenc::encoder {
namespace {

const std::vector<const Family*>& Families() {
  static const auto* families = new std::vector<const Family*>{
      &BertFamily(), &XlmRobertaFamily(), &NomicBertFamily(), &GteFamily(), &ModernBertFamily()};
  return *families;
}

}  // namespace

const Family* FindFamily(const std::string& model_type) {
  for (const Family* f : Families()) {
    for (const auto& t : f->model_types) {
      if (t == model_type) return f;
    }
  }
  return nullptr;
}

std::string AcceptedModelTypes() {
  std::vector<std::string> types;
  for (const Family* f : Families()) types.insert(types.end(), f->model_types.begin(), f->model_types.end());
  return absl::StrJoin(types, ", ");
}

}  // namespace longenc::encoder
