#include "server/wire_format.h"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/wire_format_lite.h"

namespace longenc::server {
namespace {

// Walks the wire format of `bytes` as message `d` and checks every string field for UTF-8.
// Whatever it cannot walk is malformed: refused here, never handed to the parser (which would
// log every invalid string it meets: a log flood any client could cause).
absl::Status CheckStrings(std::string_view bytes, const google::protobuf::Descriptor* d,
                          const std::string& path) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat("malformed protobuf in ",
                                                   path.empty() ? d->full_name() : path,
                                                   " at byte ", in.CurrentPosition()));
  };
  absl::flat_hash_map<int, int> seen;  // occurrences of each repeated field
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      const bool at_end = in.CurrentPosition() == static_cast<int>(bytes.size());
      return at_end ? absl::OkStatus() : malformed();
    }
    const int number = static_cast<int>(tag >> 3);
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      // Varints, fixed-width values and (deprecated) groups hold no string of ours.
      if (!WireFormatLite::SkipField(&in, tag)) return malformed();
      continue;
    }
    uint32_t len;
    if (!in.ReadVarint32(&len)) return malformed();
    const int pos = in.CurrentPosition();
    if (len > bytes.size() - static_cast<size_t>(pos)) return malformed();
    const std::string_view sub = bytes.substr(static_cast<size_t>(pos), len);
    in.Skip(static_cast<int>(len));
    const google::protobuf::FieldDescriptor* f = d->FindFieldByNumber(number);
    if (f == nullptr) continue;
    std::string name = path + f->name();
    if (f->is_repeated()) absl::StrAppend(&name, "[", seen[number]++, "]");
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !google::protobuf::internal::IsStructurallyValidUTF8(sub.data(),
                                                             static_cast<int>(sub.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " is not valid UTF-8 (string fields must be UTF-8)"));
    }
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      RETURN_IF_ERROR(CheckStrings(sub, f->message_type(), name + "."));
    }
  }
}

}  // namespace

absl::Status DecodeMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InternalError("cannot read the request bytes");
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  if (absl::Status s = CheckStrings(bytes, message->GetDescriptor(), ""); !s.ok()) return s;
  if (!message->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is not a valid ", message->GetDescriptor()->full_name(), " message"));
  }
  return absl::OkStatus();
}

absl::Time CallDeadline(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point d = context.deadline();
  if (d >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(d);
}

}  // namespace longenc::server
