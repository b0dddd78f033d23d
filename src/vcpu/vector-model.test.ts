import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import {
  defaultRoute,
  IrqRoutes,
  lowestVector,
  USER_GSIS,
  USER_VECTOR_BASE,
  vectorBit,
} from "./vector-model.js";

test("vector 0x20 + b is PENDING bit b, for all 32 vectors (bit 31 included)", () => {
  for (let b = 0; b < 32; b++) {
    assert.equal(vectorBit(USER_VECTOR_BASE + b), 1 << b);
    assert.equal(lowestVector(1 << b), USER_VECTOR_BASE + b);
  }
  assert.equal(lowestVector(0), undefined);
  for (const v of [0x1f, 0x40, 32.5, -1]) {
    assert.throws(
      () => vectorBit(v),
      (e: unknown) => isTsvisorError(e, "IRQ_ROUTE"),
    );
  }
});

test("lowestVector() is the smallest vector whose bit is set (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).filter((x) => x !== 0),
      (p) => {
        const v = lowestVector(p);
        assert.ok(v !== undefined);
        const bits = [...Array(32).keys()].filter((b) => (p & (1 << b)) !== 0);
        assert.equal(v, USER_VECTOR_BASE + Math.min(...bits));
      },
    ),
  );
});

test("every GSI starts on vCPU 0 at vector 0x20 + GSI unless routed elsewhere at creation", () => {
  const routes = new IrqRoutes(
    IrqRoutes.allocate(2, [
      [18, { vcpu: 1, vector: 0x32 }],
      [3, undefined],
    ]),
    2,
  );
  for (let g = 0; g < USER_GSIS; g++) {
    if (g === 18) assert.deepEqual(routes.route(g), { vcpu: 1, vector: 0x32 });
    else if (g === 3) assert.equal(routes.route(g), undefined);
    else assert.deepEqual(routes.route(g), defaultRoute(g));
  }
  for (const bad of [
    () => IrqRoutes.allocate(0),
    () => IrqRoutes.allocate(2, [[40, undefined]]),
    () => IrqRoutes.allocate(2, [[1, { vcpu: 2, vector: 0x21 }]]),
    () => routes.route(32),
    () => routes.stage(1, { vcpu: 0, vector: 0x50 }),
    () => new IrqRoutes(new SharedArrayBuffer(8), 1),
  ]) {
    assert.throws(bad, (e: unknown) => isTsvisorError(e, "IRQ_ROUTE"));
  }
});

test("a staged route waits for the vCPU the GSI targets now, which applies it once", () => {
  const routes = new IrqRoutes(IrqRoutes.allocate(2), 2);
  // GSI 4 is on vCPU 0: moving it to vCPU 1 is vCPU 0's to apply.
  assert.equal(routes.stage(4, { vcpu: 1, vector: 0x30 }), 0);
  assert.deepEqual(routes.route(4), defaultRoute(4), "raising still uses the old route");
  assert.deepEqual(routes.staged(4), { vcpu: 1, vector: 0x30 });
  assert.equal(routes.applyStaged(1), 0, "not vCPU 1's to apply");
  assert.equal(routes.applyStaged(0), 1);
  assert.deepEqual(routes.route(4), { vcpu: 1, vector: 0x30 });
  assert.equal(routes.staged(4), undefined);
  assert.equal(routes.applyStaged(0), 0, "applied once");
  // Now vCPU 1 owns it; unrouting is staged as null and applied by vCPU 1.
  assert.equal(routes.stage(4, undefined), 1);
  assert.equal(routes.staged(4), null);
  assert.equal(routes.applyStaged(1), 1);
  assert.equal(routes.route(4), undefined);
  // An unrouted GSI is applied by its new target.
  assert.equal(routes.stage(4, { vcpu: 1, vector: 0x24 }), 1);
  assert.equal(routes.applyStaged(0), 0);
  assert.equal(routes.applyStaged(1), 1);
  assert.deepEqual(routes.route(4), { vcpu: 1, vector: 0x24 });
});

test("any sequence of stages and applies ends on the last staged route (property)", () => {
  const route = fc.option(
    fc.record({
      vcpu: fc.integer({ min: 0, max: 1 }),
      vector: fc.integer({ min: 0x20, max: 0x3f }),
    }),
    { nil: undefined },
  );
  const op = fc.oneof(
    fc.record({ stage: route }),
    fc.record({ apply: fc.integer({ min: 0, max: 1 }) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
      const routes = new IrqRoutes(IrqRoutes.allocate(2), 2);
      let last: { vcpu: number; vector: number } | undefined = defaultRoute(7);
      for (const o of ops) {
        if ("stage" in o) {
          routes.stage(7, o.stage);
          // fast-check's records have no prototype; the table's do.
          last = o.stage && { vcpu: o.stage.vcpu, vector: o.stage.vector };
        } else routes.applyStaged(o.apply);
      }
      // Whoever owns it applies; at most two applies settle it (owner, then nobody left).
      for (let i = 0; i < 2; i++) {
        routes.applyStaged(0);
        routes.applyStaged(1);
      }
      assert.deepEqual(routes.route(7), last);
      assert.equal(routes.staged(7), undefined);
    }),
  );
});
