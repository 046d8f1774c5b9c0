// Device plumbing that keeps the host from waiting on an accelerator inside a forward pass:
// host-to-device copies through pinned memory on a side stream, the host's copy of key_valid's
// row lengths (so no layer reads them back), and a stop rule for loops of device rounds that
// never drains the device's queue. Device-agnostic LibTorch (c10 streams, events, pinned
// memory): no CUDA header, so it builds and runs unchanged with LONGENC_CUDA=OFF, where every
// function takes its CPU branch.
//
// Thread-safety: ToDeviceAsync and InputsToDevice are safe from any thread. The row-length notes
// are per thread (the inference thread notes its inputs and its layers read them). A
// RoundStopper belongs to one loop on one thread.
#ifndef LONGENC_MODEL_DEVICE_H_
#define LONGENC_MODEL_DEVICE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace longenc::model {

// `host` on `device`: `host` itself on CPU; on an accelerator a copy from pinned memory queued on
// the current stream without waiting for it (non_blocking; the pinned block is reused only after
// the copy, which LibTorch's host allocator tracks).
torch::Tensor ToDeviceAsync(const torch::Tensor& host, const torch::Device& device);

// One forward's padded inputs on `device`: ids [B, N] and key_valid [B, N] bool, built on the
// host. On CPU the inputs themselves. On an accelerator they are copied from pinned memory on a
// side stream, the current (compute) stream waits for the copies on the device (the host never
// does), and key_valid's row lengths are noted (NoteHostKeyValid), so no layer's attention reads
// them back from the device.
std::pair<torch::Tensor, torch::Tensor> InputsToDevice(const torch::Tensor& ids,
                                                       const torch::Tensor& key_valid,
                                                       const torch::Device& device);

// Per row of a key_valid [B, N]: valid tokens, and one past the last valid position.
struct RowLengths {
  std::vector<int64_t> valid;
  std::vector<int64_t> end;
};

// Remembers the row lengths of `key_valid` (any device) from `host_key_valid`, its CPU copy, so
// RowLengthsOf(key_valid) reads no device memory. Keyed by tensor identity; the note lapses when
// `key_valid` is freed.
void NoteHostKeyValid(const torch::Tensor& key_valid, const torch::Tensor& host_key_valid);

// The row lengths of `key_valid`: from a note or an earlier call on the same tensor (every layer
// of a forward passes the same one), else computed and remembered, which on an accelerator is the
// forward's one device-to-host copy (free on CPU).
RowLengths RowLengthsOf(const torch::Tensor& key_valid);

// Ends a loop of device rounds in which a round whose "go on" flag is false changes nothing, so
// running a few rounds too many gives the same result. On an accelerator each round's flag is
// copied to pinned memory behind that round's work and read only once the device has written it;
// the host waits only when it is `lag` rounds ahead of the newest flag read, so the device always
// has queued work and never idles for the host. On CPU the flag is read at once, unless
// `emulate_lag`: then a flag is seen `lag` rounds late, as on a slow device (tests check that the
// loop's result does not depend on when it stops).
class RoundStopper {
 public:
  static constexpr int64_t kDefaultLag = 4;
  explicit RoundStopper(int64_t lag = kDefaultLag, bool emulate_lag = false);
  // `go_on`: this round's flag, a one-element bool tensor on the loop's device. Returns true once
  // the flag of this round or of an earlier one is known to be false.
  bool Stop(const torch::Tensor& go_on);

 private:
  struct Pending;
  int64_t lag_;
  bool emulate_lag_;
  std::deque<std::shared_ptr<Pending>> pending_;
};

}  // namespace longenc::model

#endif  // LONGENC_MODEL_DEVICE_H_
