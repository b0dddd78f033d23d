/*
 * bench/c/kvm-pio-loop.c: the plain C KVM baseline for tsvisor's KVM benchmarks.
 *
 * Runs a flat real-mode guest (bench/kvm/pio-loop.S) the way tsvisor's hv layer sets a VM up
 * (KVM_SET_TSS_ADDR, 2 MiB memfd RAM at guest-physical 0, in-kernel irqchip + PIT2, one vCPU,
 * image at 0x1000, every segment 0), with ECX = COUNT, DX = PORT, AL = 0x55: the guest does
 * COUNT `out` instructions to PORT and then writes 0 to the debug-exit port 0xf4. The loop
 * around KVM_RUN only checks the exit and counts it, which is the floor a VMM's exit handling
 * is measured against.
 *
 *   kvm-pio-loop exits IMAGE COUNT PORT REPS
 *     one JSON line per repetition: {"exits":N,"seconds":S}, timed from the first KVM_RUN to
 *     the debug-exit write (VM setup and teardown excluded).
 *   kvm-pio-loop lifecycle IMAGE N
 *     N whole VM lifecycles (create, set up, run COUNT=1 to debug-exit, close every fd and
 *     mapping); one JSON line {"lifecycles":N,"seconds":S}. The VM fd is closed on a helper
 *     thread (joined at once), as tsvisor closes it on libuv's pool: on kvm_pvm, closing a VM
 *     with an in-kernel irqchip from the thread that created it took ~22 ms here, from another
 *     thread ~8 ms.
 *
 * Exit status 0 on success, 1 on any unexpected exit or failing call (message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2u << 20)
#define LOAD_ADDR 0x1000u
#define TSS_ADDR 0xfffbd000u
#define DEBUG_EXIT_PORT 0xf4

static void die(const char *what) {
  fprintf(stderr, "kvm-pio-loop: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct image {
  uint8_t *bytes;
  size_t len;
};

static struct image read_image(const char *path) {
  struct image img = {0};
  FILE *f = fopen(path, "rb");
  if (!f) die(path);
  img.bytes = malloc(MEM_SIZE);
  if (!img.bytes) die("malloc");
  img.len = fread(img.bytes, 1, MEM_SIZE - LOAD_ADDR, f);
  if (ferror(f)) die(path);
  fclose(f);
  if (img.len == 0) {
    fprintf(stderr, "kvm-pio-loop: %s is empty\n", path);
    exit(1);
  }
  return img;
}

struct vm {
  int vm, vcpu, memfd;
  uint8_t *mem;
  struct kvm_run *run;
  size_t run_size;
};

static struct vm vm_create(int kvm, const struct image *img) {
  struct vm v;
  v.vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (v.vm < 0) die("KVM_CREATE_VM");
  if (ioctl(v.vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) die("KVM_SET_TSS_ADDR");

  v.memfd = memfd_create("kvm-pio-loop-ram", MFD_CLOEXEC);
  if (v.memfd < 0) die("memfd_create");
  if (ftruncate(v.memfd, MEM_SIZE) < 0) die("ftruncate");
  v.mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, v.memfd, 0);
  if (v.mem == MAP_FAILED) die("mmap guest memory");
  memcpy(v.mem + LOAD_ADDR, img->bytes, img->len);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)v.mem};
  if (ioctl(v.vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

  /* tsvisor creates these after the memory slots and before the first vCPU; so does this. */
  if (ioctl(v.vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
  struct kvm_pit_config pit = {0};
  if (ioctl(v.vm, KVM_CREATE_PIT2, &pit) < 0) die("KVM_CREATE_PIT2");

  v.vcpu = ioctl(v.vm, KVM_CREATE_VCPU, 0);
  if (v.vcpu < 0) die("KVM_CREATE_VCPU");
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  v.run_size = (size_t)size;
  v.run = mmap(NULL, v.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v.vcpu, 0);
  if (v.run == MAP_FAILED) die("mmap kvm_run");
  return v;
}

static void vm_boot(struct vm *v, uint32_t count, uint16_t port) {
  struct kvm_sregs sregs;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  struct kvm_segment *segs[] = {&sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss};
  for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) {
    segs[i]->base = 0;
    segs[i]->selector = 0;
    segs[i]->limit = 0xffff;
  }
  if (ioctl(v->vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = {0};
  regs.rip = LOAD_ADDR;
  regs.rsp = LOAD_ADDR;
  regs.rflags = 2;
  regs.rcx = count;
  regs.rdx = port;
  regs.rax = 0x55;
  if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
}

/* Runs until the debug-exit write; returns the number of `out` exits to `port`. */
static uint64_t vm_run(struct vm *v, uint16_t port) {
  uint64_t exits = 0;
  for (;;) {
    if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      die("KVM_RUN");
    }
    struct kvm_run *r = v->run;
    if (r->exit_reason != KVM_EXIT_IO || r->io.direction != KVM_EXIT_IO_OUT) {
      fprintf(stderr, "kvm-pio-loop: unexpected exit %u\n", r->exit_reason);
      exit(1);
    }
    if (r->io.port == DEBUG_EXIT_PORT) return exits;
    if (r->io.port != port) {
      fprintf(stderr, "kvm-pio-loop: unexpected out to port 0x%x\n", r->io.port);
      exit(1);
    }
    exits += r->io.count;
  }
}

static void *close_fd(void *fd) {
  close((int)(intptr_t)fd);
  return NULL;
}

/* Closes everything; the VM fd on a helper thread when `elsewhere` (see the lifecycle mode). */
static void vm_destroy(struct vm *v, int elsewhere) {
  munmap(v->run, v->run_size);
  close(v->vcpu);
  pthread_t t;
  if (elsewhere) {
    if (pthread_create(&t, NULL, close_fd, (void *)(intptr_t)v->vm) != 0) die("pthread_create");
    pthread_join(t, NULL);
  } else {
    close(v->vm);
  }
  munmap(v->mem, MEM_SIZE);
  close(v->memfd);
}

static unsigned long parse(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(s, &end, 0);
  if (errno || *end || n == 0) {
    fprintf(stderr, "kvm-pio-loop: bad %s '%s'\n", what, s);
    exit(2);
  }
  return n;
}

static void usage(void) {
  fprintf(stderr,
          "usage: kvm-pio-loop exits IMAGE COUNT PORT REPS\n"
          "       kvm-pio-loop lifecycle IMAGE N\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  if (strcmp(argv[1], "exits") == 0 && argc == 6) {
    struct image img = read_image(argv[2]);
    uint32_t count = (uint32_t)parse(argv[3], "COUNT");
    uint16_t port = (uint16_t)parse(argv[4], "PORT");
    unsigned long reps = parse(argv[5], "REPS");
    for (unsigned long i = 0; i < reps; i++) {
      struct vm v = vm_create(kvm, &img);
      vm_boot(&v, count, port);
      double t0 = now();
      uint64_t exits = vm_run(&v, port);
      double t1 = now();
      vm_destroy(&v, 0);
      if (exits != count) {
        fprintf(stderr, "kvm-pio-loop: %llu exits, expected %u\n", (unsigned long long)exits, count);
        return 1;
      }
      printf("{\"exits\":%llu,\"seconds\":%.9f}\n", (unsigned long long)exits, t1 - t0);
      fflush(stdout);
    }
  } else if (strcmp(argv[1], "lifecycle") == 0 && argc == 4) {
    struct image img = read_image(argv[2]);
    unsigned long n = parse(argv[3], "N");
    double t0 = now();
    for (unsigned long i = 0; i < n; i++) {
      struct vm v = vm_create(kvm, &img);
      vm_boot(&v, 1, 0x80);
      if (vm_run(&v, 0x80) != 1) {
        fprintf(stderr, "kvm-pio-loop: lifecycle guest did not do its one out\n");
        return 1;
      }
      vm_destroy(&v, 1);
    }
    printf("{\"lifecycles\":%lu,\"seconds\":%.9f}\n", n, now() - t0);
  } else {
    usage();
  }
  close(kvm);
  return 0;
}
