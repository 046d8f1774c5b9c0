// ThreadSanitizer annotations for Debian's prebuilt (uninstrumented) Abseil
// synchronization.
//
// Why: libabsl_synchronization.so from libabsl-dev is not built with
// -fsanitize=thread, so TSan never sees absl::Mutex lock and unlock (they are
// futex and atomics inside an uninstrumented library) and reports every access
// guarded by an absl::Mutex as a data race (it did, on batcher.cc's
// mutex-guarded generation_ counter). An Abseil built with TSan emits these
// annotations itself; lacking one, this file defines the public entry points of
// Mutex, CondVar and Notification in the test executable, tells TSan about each
// lock, unlock and wait (sanitizer/tsan_interface.h) and forwards to the real
// function found with dlsym(RTLD_NEXT). Linked (with -rdynamic, so that calls
// from libgrpc and libabsl are interposed too) only into the build-tsan
// executables by scripts/sanitize.sh; never part of a product build. Matches
// the Abseil ABI of libabsl-dev 20220623 (inline namespace debian3).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

// The real definition of `symbol` in the next object
// (libabsl_synchronization.so).
template <typename Fn> Fn Real(const char *symbol) {
  void *fn = dlsym(RTLD_NEXT, symbol);
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_shim: %s not found: %s\n", symbol,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Some entry points call others through the PLT (CondVar::WaitWithTimeout calls
// WaitWithDeadline, Notification calls Mutex::LockWhen), which lands in this
// file again; only the outermost call of a thread is annotated.
thread_local int depth = 0;
struct Outermost {
  Outermost() : outer(depth++ == 0) {}
  ~Outermost() { --depth; }
  const bool outer;
};

// Declares `real` (the library's function); a nested call forwards the
// arguments to it unannotated and returns.
#define LONGENC_REAL(type, symbol, ...)                                        \
  static const auto real = Real<type>(symbol);                                 \
  const Outermost scope;                                                       \
  if (!scope.outer)                                                            \
  return real(__VA_ARGS__)

constexpr unsigned kWrite = 0;
constexpr unsigned kRead = __tsan_mutex_read_lock;

void PreUnlock(void *mu, unsigned f) { __tsan_mutex_pre_unlock(mu, f); }
void PostUnlock(void *mu, unsigned f) { __tsan_mutex_post_unlock(mu, f); }
void PreLock(void *mu, unsigned f) { __tsan_mutex_pre_lock(mu, f); }
void PostLock(void *mu, unsigned f) { __tsan_mutex_post_lock(mu, f, 0); }
void PostTryLock(void *mu, unsigned f, bool locked) {
  __tsan_mutex_post_lock(mu,
                         f | __tsan_mutex_try_lock |
                             (locked ? 0 : __tsan_mutex_try_lock_failed),
                         0);
}

} // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using CondFn = void (*)(Mutex *, const Condition &);
using CondTimeoutFn = bool (*)(Mutex *, const Condition &, Duration);
using CondDeadlineFn = bool (*)(Mutex *, const Condition &, Time);

void Mutex::Lock() {
  LONGENC_REAL(void (*)(Mutex *), "_ZN4absl7debian35Mutex4LockEv", this);
  PreLock(this, kWrite);
  real(this);
  PostLock(this, kWrite);
}

void Mutex::ReaderLock() {
  LONGENC_REAL(void (*)(Mutex *), "_ZN4absl7debian35Mutex10ReaderLockEv", this);
  PreLock(this, kRead);
  real(this);
  PostLock(this, kRead);
}

bool Mutex::TryLock() {
  LONGENC_REAL(bool (*)(Mutex *), "_ZN4absl7debian35Mutex7TryLockEv", this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  PostTryLock(this, kWrite, locked);
  return locked;
}

bool Mutex::ReaderTryLock() {
  LONGENC_REAL(bool (*)(Mutex *), "_ZN4absl7debian35Mutex13ReaderTryLockEv",
               this);
  __tsan_mutex_pre_lock(this, kRead | __tsan_mutex_try_lock);
  const bool locked = real(this);
  PostTryLock(this, kRead, locked);
  return locked;
}

void Mutex::Unlock() {
  LONGENC_REAL(void (*)(Mutex *), "_ZN4absl7debian35Mutex6UnlockEv", this);
  PreUnlock(this, kWrite);
  real(this);
  PostUnlock(this, kWrite);
}

void Mutex::ReaderUnlock() {
  LONGENC_REAL(void (*)(Mutex *), "_ZN4absl7debian35Mutex12ReaderUnlockEv",
               this);
  PreUnlock(this, kRead);
  real(this);
  PostUnlock(this, kRead);
}

void Mutex::LockWhen(const Condition &cond) {
  LONGENC_REAL(CondFn, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE",
               this, cond);
  PreLock(this, kWrite);
  real(this, cond);
  PostLock(this, kWrite);
}

void Mutex::ReaderLockWhen(const Condition &cond) {
  LONGENC_REAL(CondFn,
               "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE", this,
               cond);
  PreLock(this, kRead);
  real(this, cond);
  PostLock(this, kRead);
}

// The timed forms return with the lock held whatever the condition's value.
bool Mutex::LockWhenWithTimeout(const Condition &cond, Duration timeout) {
  LONGENC_REAL(CondTimeoutFn,
               "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_"
               "9ConditionENS0_8DurationE",
               this, cond, timeout);
  PreLock(this, kWrite);
  const bool r = real(this, cond, timeout);
  PostLock(this, kWrite);
  return r;
}

bool Mutex::LockWhenWithDeadline(const Condition &cond, Time deadline) {
  LONGENC_REAL(CondDeadlineFn,
               "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_"
               "9ConditionENS0_4TimeE",
               this, cond, deadline);
  PreLock(this, kWrite);
  const bool r = real(this, cond, deadline);
  PostLock(this, kWrite);
  return r;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition &cond, Duration timeout) {
  LONGENC_REAL(CondTimeoutFn,
               "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_"
               "9ConditionENS0_8DurationE",
               this, cond, timeout);
  PreLock(this, kRead);
  const bool r = real(this, cond, timeout);
  PostLock(this, kRead);
  return r;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition &cond, Time deadline) {
  LONGENC_REAL(CondDeadlineFn,
               "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_"
               "9ConditionENS0_4TimeE",
               this, cond, deadline);
  PreLock(this, kRead);
  const bool r = real(this, cond, deadline);
  PostLock(this, kRead);
  return r;
}

// Await may release the lock while the condition is false: model it as unlock +
// lock, so what other threads did under the lock meanwhile happens-before the
// code after Await. The wait sits between pre- and post-unlock, where TSan
// ignores accesses: Abseil evaluates the condition there with the lock really
// held (as an Abseil built with TSan annotates it).
void Mutex::Await(const Condition &cond) {
  LONGENC_REAL(CondFn, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE", this,
               cond);
  PreUnlock(this, kWrite);
  real(this, cond);
  PostUnlock(this, kWrite);
  PreLock(this, kWrite);
  PostLock(this, kWrite);
}

bool Mutex::AwaitWithTimeout(const Condition &cond, Duration timeout) {
  LONGENC_REAL(CondTimeoutFn,
               "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_"
               "8DurationE",
               this, cond, timeout);
  PreUnlock(this, kWrite);
  const bool r = real(this, cond, timeout);
  PostUnlock(this, kWrite);
  PreLock(this, kWrite);
  PostLock(this, kWrite);
  return r;
}

bool Mutex::AwaitWithDeadline(const Condition &cond, Time deadline) {
  LONGENC_REAL(
      CondDeadlineFn,
      "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE",
      this, cond, deadline);
  PreUnlock(this, kWrite);
  const bool r = real(this, cond, deadline);
  PostUnlock(this, kWrite);
  PreLock(this, kWrite);
  PostLock(this, kWrite);
  return r;
}

// A wait releases `mu` and takes it again before returning (callers hold it
// exclusively); annotated like Await.
void CondVar::Wait(Mutex *mu) {
  LONGENC_REAL(void (*)(CondVar *, Mutex *),
               "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE", this, mu);
  PreUnlock(mu, kWrite);
  real(this, mu);
  PostUnlock(mu, kWrite);
  PreLock(mu, kWrite);
  PostLock(mu, kWrite);
}

bool CondVar::WaitWithTimeout(Mutex *mu, Duration timeout) {
  LONGENC_REAL(
      bool (*)(CondVar *, Mutex *, Duration),
      "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE",
      this, mu, timeout);
  PreUnlock(mu, kWrite);
  const bool r = real(this, mu, timeout);
  PostUnlock(mu, kWrite);
  PreLock(mu, kWrite);
  PostLock(mu, kWrite);
  return r;
}

bool CondVar::WaitWithDeadline(Mutex *mu, Time deadline) {
  LONGENC_REAL(
      bool (*)(CondVar *, Mutex *, Time),
      "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE", this,
      mu, deadline);
  PreUnlock(mu, kWrite);
  const bool r = real(this, mu, deadline);
  PostUnlock(mu, kWrite);
  PreLock(mu, kWrite);
  PostLock(mu, kWrite);
  return r;
}

// Notify happens-before every wait that returns because of it; the waits' fast
// path (already notified) takes no lock, so the edge is made explicit on the
// Notification's address. HasBeenNotified() is inline and cannot be annotated
// from here.
void Notification::Notify() {
  LONGENC_REAL(void (*)(Notification *),
               "_ZN4absl7debian312Notification6NotifyEv", this);
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  LONGENC_REAL(void (*)(const Notification *),
               "_ZNK4absl7debian312Notification19WaitForNotificationEv", this);
  real(this);
  __tsan_acquire(const_cast<Notification *>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  LONGENC_REAL(bool (*)(const Notification *, Duration),
               "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeout"
               "ENS0_8DurationE",
               this, timeout);
  const bool r = real(this, timeout);
  if (r)
    __tsan_acquire(const_cast<Notification *>(this));
  return r;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  LONGENC_REAL(bool (*)(const Notification *, Time),
               "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlin"
               "eENS0_4TimeE",
               this, deadline);
  const bool r = real(this, deadline);
  if (r)
    __tsan_acquire(const_cast<Notification *>(this));
  return r;
}

ABSL_NAMESPACE_END
} // namespace absl
