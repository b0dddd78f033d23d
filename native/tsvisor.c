/*
 * tsvisor's native binding: thin wrappers over the Linux system calls a KVM monitor needs.
 * No policy lives here. Every call that can fail returns -errno as a number instead of
 * throwing, so the TypeScript side decides what an error means; only misuse of the
 * binding itself (wrong argument types) throws a JS exception.
 */
#define _GNU_SOURCE
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm-layout.h"

#define MAX_ARGS 6

/* A failed N-API call here means the binding was misused; the pending exception says how. */
#define NAPI_OK(env, call)                                                                   \
  do {                                                                                       \
    if ((call) != napi_ok) {                                                                 \
      const napi_extended_error_info *info_ = NULL;                                          \
      bool pending_ = false;                                                                 \
      napi_is_exception_pending((env), &pending_);                                           \
      if (!pending_) {                                                                       \
        napi_get_last_error_info((env), &info_);                                             \
        napi_throw_error((env), "ERR_TSVISOR_NATIVE",                                        \
                         info_ && info_->error_message ? info_->error_message                \
                                                       : "N-API call failed");               \
      }                                                                                      \
      return NULL;                                                                           \
    }                                                                                        \
  } while (0)

static napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  if (napi_create_int64(env, v, &out) != napi_ok) return NULL;
  return out;
}

static napi_value neg_errno(napi_env env) { return make_int(env, -(int64_t)errno); }

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
                     size_t *got) {
  size_t argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < want) {
    napi_throw_type_error(env, "ERR_TSVISOR_NATIVE", "too few arguments");
    return false;
  }
  if (got) *got = argc;
  return true;
}

/* Accepts a JS number or a BigInt; BigInts must fit in 64 bits unsigned or signed. */
static bool get_u64(napi_env env, napi_value v, uint64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_bigint) {
    bool lossless = false;
    if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok) return false;
    if (!lossless) {
      int64_t s = 0;
      if (napi_get_value_bigint_int64(env, v, &s, &lossless) != napi_ok) return false;
      if (!lossless) {
        napi_throw_range_error(env, "ERR_TSVISOR_NATIVE", "BigInt does not fit in 64 bits");
        return false;
      }
      *out = (uint64_t)s;
    }
    return true;
  }
  if (t == napi_number) {
    int64_t s = 0;
    if (napi_get_value_int64(env, v, &s) != napi_ok) return false;
    *out = (uint64_t)s;
    return true;
  }
  napi_throw_type_error(env, "ERR_TSVISOR_NATIVE", "expected a number or a BigInt");
  return false;
}

static bool get_i32(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t != napi_number) {
    napi_throw_type_error(env, "ERR_TSVISOR_NATIVE", "expected a number");
    return false;
  }
  return napi_get_value_int32(env, v, out) == napi_ok;
}

/* The address of a buffer-like argument's first byte, or of nothing for undefined. */
static bool get_pointer_arg(napi_env env, napi_value v, unsigned long *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_undefined || t == napi_null) {
    *out = 0;
    return true;
  }
  if (t == napi_number || t == napi_bigint) {
    uint64_t u = 0;
    if (!get_u64(env, v, &u)) return false;
    *out = (unsigned long)u;
    return true;
  }
  bool is = false;
  void *data = NULL;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type tt;
    size_t len, off;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &tt, &len, &data, &ab, &off) != napi_ok) return false;
    *out = (unsigned long)(uintptr_t)data;
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    size_t len, off;
    napi_value ab;
    if (napi_get_dataview_info(env, v, &len, &data, &ab, &off) != napi_ok) return false;
    *out = (unsigned long)(uintptr_t)data;
    return true;
  }
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    size_t len;
    if (napi_get_arraybuffer_info(env, v, &data, &len) != napi_ok) return false;
    *out = (unsigned long)(uintptr_t)data;
    return true;
  }
  napi_throw_type_error(env, "ERR_TSVISOR_NATIVE",
                        "expected a number, BigInt, TypedArray, DataView or ArrayBuffer");
  return false;
}

/* open(path, flags) -> fd | -errno. O_CLOEXEC is always added: no fd leaks into children. */
static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  char path[4096];
  size_t n = 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, argv[0], path, sizeof path, &n));
  int32_t flags = 0;
  if (!get_i32(env, argv[1], &flags)) return NULL;
  int fd = open(path, flags | O_CLOEXEC);
  return fd < 0 ? neg_errno(env) : make_int(env, fd);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  int32_t fd = 0;
  if (!get_i32(env, argv[0], &fd)) return NULL;
  return close(fd) < 0 ? neg_errno(env) : make_int(env, 0);
}

/* ioctl(fd, request, arg?) -> result | -errno. */
static napi_value js_ioctl(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  size_t argc = 0;
  if (!get_args(env, info, 2, argv, &argc)) return NULL;
  int32_t fd = 0;
  if (!get_i32(env, argv[0], &fd)) return NULL;
  uint64_t req = 0;
  if (!get_u64(env, argv[1], &req)) return NULL;
  unsigned long arg = 0;
  if (argc > 2 && !get_pointer_arg(env, argv[2], &arg)) return NULL;
  int r = ioctl(fd, (unsigned long)req, arg);
  return r < 0 ? neg_errno(env) : make_int(env, r);
}

/* mmap(length, prot, flags, fd, offset) -> BigInt address | -errno. */
static napi_value js_mmap(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 5, argv, NULL)) return NULL;
  uint64_t len = 0, off = 0;
  int32_t prot = 0, flags = 0, fd = 0;
  if (!get_u64(env, argv[0], &len) || !get_i32(env, argv[1], &prot) ||
      !get_i32(env, argv[2], &flags) || !get_i32(env, argv[3], &fd) ||
      !get_u64(env, argv[4], &off))
    return NULL;
  void *p = mmap(NULL, (size_t)len, prot, flags, fd, (off_t)off);
  if (p == MAP_FAILED) return neg_errno(env);
  napi_value out;
  NAPI_OK(env, napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &out));
  return out;
}

static napi_value js_munmap(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  uint64_t addr = 0, len = 0;
  if (!get_u64(env, argv[0], &addr) || !get_u64(env, argv[1], &len)) return NULL;
  return munmap((void *)(uintptr_t)addr, (size_t)len) < 0 ? neg_errno(env) : make_int(env, 0);
}

/*
 * view(address, length) -> ArrayBuffer over memory this process already maps. It has no
 * finalizer: the mapping's owner unmaps it, and only after every view has been dropped or
 * detached. A zero-length external buffer would be born detached, so it is refused.
 */
static napi_value js_view(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  uint64_t addr = 0, len = 0;
  if (!get_u64(env, argv[0], &addr) || !get_u64(env, argv[1], &len)) return NULL;
  if (len == 0 || addr == 0) {
    napi_throw_range_error(env, "ERR_TSVISOR_NATIVE", "a view needs an address and a length");
    return NULL;
  }
  napi_value out;
  NAPI_OK(env, napi_create_external_arraybuffer(env, (void *)(uintptr_t)addr, (size_t)len, NULL,
                                                NULL, &out));
  return out;
}

/* detach(arrayBuffer): afterwards JS sees a zero-length buffer instead of freed memory. */
static napi_value js_detach(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  NAPI_OK(env, napi_detach_arraybuffer(env, argv[0]));
  return make_int(env, 0);
}

static napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  char name[250];
  size_t n = 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &n));
  int32_t flags = 0;
  if (!get_i32(env, argv[1], &flags)) return NULL;
  int fd = (int)syscall(SYS_memfd_create, name, (unsigned)flags);
  return fd < 0 ? neg_errno(env) : make_int(env, fd);
}

static napi_value js_ftruncate(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  int32_t fd = 0;
  uint64_t size = 0;
  if (!get_i32(env, argv[0], &fd) || !get_u64(env, argv[1], &size)) return NULL;
  return ftruncate(fd, (off_t)size) < 0 ? neg_errno(env) : make_int(env, 0);
}

static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  int32_t initval = 0, flags = 0;
  if (!get_i32(env, argv[0], &initval) || !get_i32(env, argv[1], &flags)) return NULL;
  int fd = eventfd((unsigned)initval, flags);
  return fd < 0 ? neg_errno(env) : make_int(env, fd);
}

/* eventfdRead(fd) -> BigInt counter | -errno (-EAGAIN when a non-blocking eventfd is zero). */
static napi_value js_eventfd_read(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  int32_t fd = 0;
  if (!get_i32(env, argv[0], &fd)) return NULL;
  uint64_t v = 0;
  ssize_t r;
  do {
    r = read(fd, &v, sizeof v);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return neg_errno(env);
  if (r != (ssize_t)sizeof v) {
    errno = EIO;
    return neg_errno(env);
  }
  napi_value out;
  NAPI_OK(env, napi_create_bigint_uint64(env, v, &out));
  return out;
}

static napi_value js_eventfd_write(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  int32_t fd = 0;
  uint64_t v = 0;
  if (!get_i32(env, argv[0], &fd) || !get_u64(env, argv[1], &v)) return NULL;
  ssize_t r;
  do {
    r = write(fd, &v, sizeof v);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? neg_errno(env) : make_int(env, 0);
}

static napi_value js_gettid(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, (int64_t)syscall(SYS_gettid));
}

static napi_value js_tgkill(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  int32_t tgid = 0, tid = 0, sig = 0;
  if (!get_i32(env, argv[0], &tgid) || !get_i32(env, argv[1], &tid) || !get_i32(env, argv[2], &sig))
    return NULL;
  return syscall(SYS_tgkill, tgid, tid, sig) < 0 ? neg_errno(env) : make_int(env, 0);
}

static void noop_handler(int sig) { (void)sig; }

/*
 * Installs a handler that does nothing, deliberately without SA_RESTART: the point of the
 * signal is to make a blocking KVM_RUN return -EINTR. Signals Node or glibc own are refused.
 */
static napi_value js_install_noop_handler(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  int32_t sig = 0;
  if (!get_i32(env, argv[0], &sig)) return NULL;
  if (sig == SIGINT || sig == SIGUSR1 || sig == SIGSEGV || sig == SIGTERM || sig == SIGKILL ||
      sig == SIGSTOP || (sig >= 32 && sig < SIGRTMIN) || sig <= 0 || sig > SIGRTMAX) {
    errno = EINVAL;
    return neg_errno(env);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = noop_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  return sigaction(sig, &sa, NULL) < 0 ? neg_errno(env) : make_int(env, 0);
}

static napi_value js_sigrtmin(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, SIGRTMIN);
}

/* constants(): { group: { name: value } } straight from the compiler's view of the headers. */
static napi_value make_constants(napi_env env) {
  napi_value root;
  NAPI_OK(env, napi_create_object(env, &root));
  for (size_t i = 0; i < sizeof tsv_consts / sizeof tsv_consts[0]; i++) {
    const struct tsv_const *c = &tsv_consts[i];
    napi_value group;
    bool has = false;
    NAPI_OK(env, napi_has_named_property(env, root, c->group, &has));
    if (has) {
      NAPI_OK(env, napi_get_named_property(env, root, c->group, &group));
    } else {
      NAPI_OK(env, napi_create_object(env, &group));
      NAPI_OK(env, napi_set_named_property(env, root, c->group, group));
    }
    napi_value v;
    NAPI_OK(env, napi_create_double(env, c->value, &v));
    NAPI_OK(env, napi_set_named_property(env, group, c->name, v));
  }
  return root;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"open", js_open},
      {"close", js_close},
      {"ioctl", js_ioctl},
      {"mmap", js_mmap},
      {"munmap", js_munmap},
      {"view", js_view},
      {"detach", js_detach},
      {"memfdCreate", js_memfd_create},
      {"ftruncate", js_ftruncate},
      {"eventfd", js_eventfd},
      {"eventfdRead", js_eventfd_read},
      {"eventfdWrite", js_eventfd_write},
      {"gettid", js_gettid},
      {"tgkill", js_tgkill},
      {"installNoopHandler", js_install_noop_handler},
      {"sigrtmin", js_sigrtmin},
  };
  /* Plain assignments, so the exports are enumerable and easy to inspect. */
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    NAPI_OK(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f));
    NAPI_OK(env, napi_set_named_property(env, exports, fns[i].name, f));
  }
  napi_value consts = make_constants(env);
  if (consts == NULL) return NULL;
  NAPI_OK(env, napi_set_named_property(env, exports, "constants", consts));
  return exports;
}
