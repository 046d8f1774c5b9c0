#include "model/device.h"

#include <algorithm>
#include <memory>

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/intrusive_ptr.h>

namespace longenc::model {
namespace {

// The row lengths of key_valid on the host, computed where key_valid lives.
RowLengths Compute(const torch::Tensor& key_valid) {
  const int64_t batch = key_valid.size(0), n = key_valid.size(1);
  RowLengths lengths{std::vector<int64_t>(batch, 0), std::vector<int64_t>(batch, 0)};
  if (batch == 0 || n == 0) return lengths;
  const torch::Tensor positions =
      torch::arange(1, n + 1, key_valid.options().dtype(torch::kLong));
  // host-sync-ok: the forward's one read of the row lengths when nothing noted them (free on CPU).
  const torch::Tensor stats =
      torch::stack({key_valid.sum(1), (key_valid.to(torch::kLong) * positions).amax(1)}, 1)
          .to(torch::kCPU);
  const auto acc = stats.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    lengths.valid[b] = acc[b][0];
    lengths.end[b] = acc[b][1];
  }
  return lengths;
}

// A few remembered key_valid tensors, by identity. The weak reference keeps the TensorImpl's
// address from being reused while an entry lives (its storage is freed as usual), so an address
// match with a live reference is the same tensor; the version counter catches in-place changes
// (inference tensors have none and cannot change outside inference mode).
struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> tensor;
  const c10::TensorImpl* impl = nullptr;
  int64_t version = 0;
  RowLengths lengths;
};
constexpr size_t kEntries = 4;  // nested batches (preemption) run forwards inside a forward
thread_local std::deque<Entry> entries;

int64_t VersionOf(const torch::Tensor& t) { return t.is_inference() ? 0 : t._version(); }

const RowLengths* Find(const torch::Tensor& key_valid) {
  for (const Entry& e : entries) {
    if (!e.tensor.expired() && e.impl == key_valid.unsafeGetTensorImpl() &&
        e.version == VersionOf(key_valid)) {
      return &e.lengths;
    }
  }
  return nullptr;
}

void Remember(const torch::Tensor& key_valid, RowLengths lengths) {
  if (entries.size() >= kEntries) entries.pop_front();
  entries.push_back({c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(
                         key_valid.getIntrusivePtr()),
                     key_valid.unsafeGetTensorImpl(), VersionOf(key_valid), std::move(lengths)});
}

}  // namespace

torch::Tensor ToDeviceAsync(const torch::Tensor& host, const torch::Device& device) {
  if (device.is_cpu()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

std::pair<torch::Tensor, torch::Tensor> InputsToDevice(const torch::Tensor& ids,
                                                       const torch::Tensor& key_valid,
                                                       const torch::Device& device) {
  if (device.is_cpu()) return {ids.to(device), key_valid.to(device)};
  const c10::impl::VirtualGuardImpl impl(device.type());
  const c10::Stream compute = impl.getStream(device);
  const c10::Stream side = impl.getStreamFromGlobalPool(device);
  torch::Tensor ids_d, valid_d;
  {
    const c10::StreamGuard on_side(side);
    ids_d = ToDeviceAsync(ids, device);
    valid_d = ToDeviceAsync(key_valid, device);
  }
  c10::Event copied(device.type());
  copied.record(side);
  copied.block(compute);
  // The copies were allocated on the side stream and are read on the compute stream: the
  // allocator must not hand their blocks out again before the compute stream is done.
  impl.recordDataPtrOnStream(ids_d.storage().data_ptr(), compute);
  impl.recordDataPtrOnStream(valid_d.storage().data_ptr(), compute);
  NoteHostKeyValid(valid_d, key_valid);
  return {ids_d, valid_d};
}

void NoteHostKeyValid(const torch::Tensor& key_valid, const torch::Tensor& host_key_valid) {
  TORCH_CHECK(host_key_valid.is_cpu() && host_key_valid.sizes() == key_valid.sizes(),
              "NoteHostKeyValid: the host copy must be a CPU tensor of key_valid's shape");
  Remember(key_valid, Compute(host_key_valid));
}

RowLengths RowLengthsOf(const torch::Tensor& key_valid) {
  if (const RowLengths* known = Find(key_valid)) return *known;
  RowLengths lengths = Compute(key_valid);
  Remember(key_valid, lengths);
  return lengths;
}

struct RoundStopper::Pending {
  torch::Tensor host;                  // the flag in pinned memory (CPU: the value itself)
  std::unique_ptr<c10::Event> written;  // recorded after the copy; null on CPU
};

RoundStopper::RoundStopper(int64_t lag, bool emulate_lag)
    : lag_(std::max<int64_t>(0, lag)), emulate_lag_(emulate_lag) {}

bool RoundStopper::Stop(const torch::Tensor& go_on) {
  const torch::Device device = go_on.device();
  if (device.is_cpu()) {
    // host-sync-ok: a CPU tensor's value is on the host.
    const bool value = go_on.reshape({}).item<bool>();
    if (!emulate_lag_) return !value;
    pending_.push_back(std::make_shared<Pending>(Pending{torch::tensor(value), nullptr}));
    if (static_cast<int64_t>(pending_.size()) <= lag_) return false;
    const bool seen = pending_.front()->host.item<bool>();  // host-sync-ok: CPU
    pending_.pop_front();
    return !seen;
  }
  const c10::impl::VirtualGuardImpl impl(device.type());
  auto pending = std::make_shared<Pending>();
  pending->host = torch::empty({}, torch::TensorOptions().dtype(torch::kBool).pinned_memory(true));
  pending->host.copy_(go_on.reshape({}), /*non_blocking=*/true);
  pending->written = std::make_unique<c10::Event>(device.type());
  pending->written->record(impl.getStream(device));
  pending_.push_back(std::move(pending));
  while (!pending_.empty()) {
    const Pending& oldest = *pending_.front();
    if (!oldest.written->query()) {
      // Wait only when `lag` rounds are queued behind it: the device stays busy meanwhile.
      if (static_cast<int64_t>(pending_.size()) <= lag_) return false;
      oldest.written->synchronize();
    }
    const bool value = oldest.host.item<bool>();  // host-sync-ok: pinned host memory, written
    pending_.pop_front();
    if (!value) return true;
  }
  return false;
}

}  // namespace longenc::model
