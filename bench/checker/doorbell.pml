/*
 * bench/checker/doorbell.pml — the vCPU residency/doorbell protocol of src/vcpu/residency.ts
 * in Promela, for SPIN, at the same granularity as tsvisor's checker: one Promela step per
 * atomic operation of the TypeScript code (load, compare-and-swap, or, add, wait, notify, kick).
 * Local computation is folded into the steps that touch shared state wherever Promela allows.
 *
 * Designs:     default the fixed (IN_WFI) design; -DPREFIX for Linux before b321c31c9b7b
 *              (need_db passed by the WFI put only; the pre-fix block path around schedule()).
 * Scenarios:   default "preempt" (a scheduler process preempts the running vCPU: sched_out →
 *              put, sched_in → load, while the vCPU cannot run); -DRECONFIG for "reconfig"
 *              (another process reconfigures — put, then load with flush — at any time).
 * Sizes:       -DINJECTORS=n (default 2), -DPREEMPTIONS=n (2), -DRELOADS=n (2): the same
 *              defaults as src/check/doorbell.ts.
 *
 * Checked: "IN_WFI ⇒ ¬resident ∧ (doorbell armed ∨ pending)", "pending ∧ vCPU asleep ⇒ an
 * injector still running" (assertions in a monitor process) and, as invalid end states,
 * deadlock (a vCPU asleep forever).
 *
 * Run:  spin -a [-DPREFIX] [-DRECONFIG] doorbell.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan
 */

#ifndef INJECTORS
#define INJECTORS 2
#endif
#ifndef PREEMPTIONS
#define PREEMPTIONS 2
#endif
#ifndef RELOADS
#define RELOADS 2
#endif

#define RESIDENT 1
#define IN_WFI 2
#define DB_ARMED 4
#define RING 256
#define KICK 1
#define PAUSE 4
#define WAKE_REQUESTS (255 - KICK - PAUSE)
#define ALL ((1 << INJECTORS) - 1)

int state = 0;           /* STATE: flags + ring counter in bits 8.. */
byte pending = 0;        /* PENDING */
byte requests = 0;       /* REQUESTS */
bit sched = 0;           /* model only: the scheduler holds the vCPU off its CPU */
bit asleep = 0;          /* the vCPU is blocked in wait(STATE) */
bit vcpu_started = 0;
bit vcpu_done = 0;
byte injectors_done = 0;

/* The vCPU's steps are guarded: it cannot run while preempted. */
#define V (sched == 0)

/* The state transitions of residency.ts (afterLoad, afterPut, afterWfiEntry, afterWfiExit). */
#define T_LOAD 1
#define T_PUT 2
#define T_ENTER 3
#define T_EXIT 4

inline transition(KIND) {
  d_step {
    if
    :: KIND == T_LOAD && (s & IN_WFI) != 0 -> next = s
    :: KIND == T_LOAD && (s & IN_WFI) == 0 -> next = (s | RESIDENT) & ~DB_ARMED
    :: KIND == T_PUT && (s & IN_WFI) != 0 -> next = (s & ~RESIDENT) | DB_ARMED
    :: KIND == T_PUT && (s & IN_WFI) == 0 -> next = s & ~(RESIDENT | DB_ARMED)
    :: KIND == T_ENTER -> next = ((s | IN_WFI) & ~RESIDENT) | DB_ARMED
    :: KIND == T_EXIT -> next = s & ~(IN_WFI | DB_ARMED)
    fi
  }
}

/* STATE <- KIND(s) by a compare-and-swap loop; s ends holding the value replaced. */
inline update(G, KIND) {
  atomic { G -> s = state };
  do
  :: transition(KIND);
     if
     :: next == s -> break
     :: else ->
        atomic { G -> seen = state; if :: seen == s -> state = next :: else fi };
        if
        :: seen == s -> break
        :: else -> s = seen
        fi
     fi
  od
}

/* wait(STATE, w): sleeps only if STATE still holds w; a notify clears asleep. */
inline wait_state(G, w) {
  atomic { G -> if :: state != w -> skip :: else -> asleep = 1 fi };
  (G && asleep == 0)
}

#ifndef PREFIX

/* ---- the fixed design (src/vcpu/residency.ts) ---- */

inline load_vcpu(G) {
  update(G, T_LOAD)
}

/* load(flush = true), as reload() and resume() make it */
inline load_flush(G) {
  load_vcpu(G);
  if
  :: (s & (IN_WFI | RESIDENT)) == 0 ->
     p = pending;
     r = requests;
     if
     :: p != 0 || (r & WAKE_REQUESTS) != 0 ->
        requests = requests | KICK;
        skip /* kick */
     :: else
     fi
  :: else
  fi
}

inline put(G) {
  update(G, T_PUT)
}

inline wfi() {
  update(V, T_ENTER);
  do
  :: atomic { V -> w = state };
     atomic { V -> p = pending };
     if
     :: p != 0 -> break
     :: else
     fi;
     atomic { V -> r = requests };
     if
     :: (r & WAKE_REQUESTS) != 0 -> break
     :: else
     fi;
     wait_state(V, w)
  od;
  update(V, T_EXIT);
  load_vcpu(V)
}

inline sched_out() { put(true) }
inline sched_in() { load_vcpu(true) }
inline reload() { put(true); load_flush(true) }

#else

/* ---- the pre-fix design (src/check/designs/pre-fix.ts) ---- */

inline put_db(G, need_db) {
  atomic { G -> s = state };
  do
  :: (s & RESIDENT) == 0 -> break
  :: else ->
     d_step {
       next = s & ~(RESIDENT | DB_ARMED);
       if
       :: need_db -> next = next | DB_ARMED
       :: else
       fi
     };
     atomic { G -> seen = state; if :: seen == s -> state = next :: else fi };
     if
     :: seen == s -> break
     :: else -> s = seen
     fi
  od
}

inline load_vcpu(G) {
  atomic { G -> s = state };
  do
  :: (s & RESIDENT) != 0 -> break
  :: else ->
     d_step { next = (s | RESIDENT) & ~DB_ARMED };
     atomic { G -> seen = state; if :: seen == s -> state = next :: else fi };
     if
     :: seen == s -> break
     :: else -> s = seen
     fi
  od
}

inline wfi() {
  put_db(V, 1);
  do
  :: atomic { V -> w = state };            /* set_current_state */
     rings = w >> 8;
     atomic { V -> p = pending };           /* check_block */
     if
     :: p != 0 -> break
     :: else
     fi;
     put_db(V, 0);                          /* schedule(): sched_out */
     atomic { V -> w = state };
     if
     :: (w >> 8) == rings -> wait_state(V, w)
     :: else
     fi;
     load_vcpu(V)                           /* sched_in */
  od;
  load_vcpu(V)
}

inline sched_out() { put_db(true, 0) }
inline sched_in() { load_vcpu(true) }
inline reload() { put_db(true, 0); load_vcpu(true) }

#endif

active proctype vcpu() {
  int s, seen, next, w, rings;
  byte p, r, got = 0;
  atomic { V -> vcpu_started = 1 };
  load_vcpu(V);
  do
  :: atomic { V -> p = pending; pending = 0; got = got | p };   /* takePending() */
     if
     :: got == ALL -> break
     :: else
     fi;
     wfi()
  od;
  vcpu_done = 1
}

active [INJECTORS] proctype injector() {
  int s;
  byte mine = 1 << (_pid - 1);
  pending = pending | mine;                 /* publish */
  s = state;                                /* deliver */
  if
  :: (s & RESIDENT) != 0 ->
     requests = requests | KICK;
     skip                                   /* kick */
  :: (s & RESIDENT) == 0 && (s & DB_ARMED) != 0 ->
     state = state + RING;                  /* ring */
     asleep = 0                             /* notify */
  :: else                                   /* left pending */
  fi;
  injectors_done++
}

#ifndef RECONFIG
active proctype scheduler() {
  int s, seen, next;
  byte p, r, i = 0;
end:
  do
  :: atomic { i < PREEMPTIONS && sched == 0 && vcpu_started && !asleep && !vcpu_done -> sched = 1 };
     sched_out();
     sched_in();
     atomic { sched = 0; i++ }
  od
}
#else
active proctype reconf() {
  int s, seen, next;
  byte p, r, i = 0;
  do
  :: i < RELOADS -> reload(); i++
  :: else -> break
  od
}
#endif

active proctype monitor() {
end:
  atomic {
    ((state & IN_WFI) != 0 &&
      ((state & RESIDENT) != 0 || ((state & DB_ARMED) == 0 && pending == 0))) ||
    (asleep && pending != 0 && injectors_done == INJECTORS) ->
      assert(false)
  }
}
